"""The logs training tools write (tests/fixtures/logs, made by the real tools: see its README):
each read by content and diagnosed right on a healthy and a failing run; column roles and
options; train vs eval (overfitting); what an unreadable file is told."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from adaopt.diagnostics import History, LogError, diagnose, read_log
from adaopt.diagnostics.logs import FORMATS
from adaopt.diagnostics.overfit import overfitting
from adaopt.diagnostics.verdict_record import fmt

FIXTURES = Path(__file__).parent / "fixtures" / "logs"
HEALTHY = ("CONVERGING", "CONVERGED")
FAILING = ("DIVERGING", "NONFINITE")

# (fixture, the format it is read as, the columns its roles give)
CASES = [
    ("lightning_{}.csv", "lightning_csv", {"loss", "val_loss", "epoch"}),
    ("hf_{}_trainer_state.json", "hf_trainer_state", {"loss", "eval_loss", "lr", "grad_norm", "epoch"}),
    ("events.out.tfevents.lightning_{}", "tensorboard", {"loss", "val_loss"}),
    ("events.out.tfevents.hf_{}", "tensorboard", {"loss", "eval/loss", "lr", "grad_norm"}),
    ("run-lightning_{}-tag-train_loss.csv", "tensorboard_csv", {"loss"}),
    ("run-lightning_{}-tag-train_loss.json", "tensorboard_json", {"loss"}),
    ("keras_{}.csv", "keras_csv", {"loss", "val_loss"}),
    ("wandb_{}.csv", "wandb_csv", {"loss", "lr", "grad_norm"}),
]


def _needs(name):
    if name.startswith("events."):
        pytest.importorskip("tensorboard")


@pytest.mark.parametrize("health, verdicts", [("healthy", HEALTHY), ("failing", FAILING)])
@pytest.mark.parametrize("pattern, fmt, roles", CASES, ids=[c[1] + ":" + c[0].split("{")[0] for c in CASES])
def test_each_tools_log_is_read_by_content_and_diagnosed_right(pattern, fmt, roles, health, verdicts):
    name = pattern.format(health)
    _needs(name)
    h = read_log(FIXTURES / name)
    assert h.read_from["format"] == fmt
    assert roles <= set(h.columns), h.columns
    d = diagnose(h)
    assert d.verdict in verdicts, (name, str(d))


def test_lightning_validation_rows_sharing_a_step_are_one_row():
    path = FIXTURES / "lightning_healthy.csv"
    rows = path.read_text().splitlines()[1:]
    steps = [int(r.split(",")[1]) for r in rows]
    h = read_log(path)
    assert h.steps.tolist() == sorted(set(steps))  # the repeats were merged, not refused
    assert len(steps) > len(h)
    val_rows = sum(1 for r in rows if r.split(",")[3])
    assert h.present("val_loss").sum() == val_rows == 4  # one validation a epoch, kept apart from the loss
    shared = h.present("val_loss") & h.present("loss")
    assert shared.any()  # a step with both: the training and the validation row of one step


def test_a_lightning_step_with_two_different_values_is_refused(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss,val_loss\n0,1,0.5,\n0,1,0.4,\n")
    with pytest.raises(LogError, match=r"line 3, column 'train_loss'.*0\.5.*0\.4.*Lightning"):
        read_log(path)


def test_lightning_folder_reads_the_newest_version_and_says_which():
    for given in (FIXTURES / "lightning_layout", FIXTURES / "lightning_layout" / "lightning_logs"):
        h = read_log(given)
        assert h.read_from["path"].endswith("version_1/metrics.csv")
        assert "version_1, the newest of 2" in h.read_from["note"]
        assert diagnose(h).verdict in HEALTHY  # version_0 is the failing run


def test_a_tensorboard_run_folder_is_read(tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "runs" / "Dec02_vm"
    run.mkdir(parents=True)
    shutil.copy(FIXTURES / "events.out.tfevents.hf_failing", run / "events.out.tfevents.1.vm.1.0")
    for given in (run, tmp_path):  # the run, or the output_dir holding runs/
        h = read_log(given)
        assert h.read_from["format"] == "tensorboard" and "eval/loss" in h.columns
        assert diagnose(h).verdict in FAILING


def test_without_tensorboard_event_files_say_what_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(LogError, match="pip install tensorboard"):
        read_log(FIXTURES / "events.out.tfevents.lightning_healthy")


def test_hf_summary_record_is_not_a_step_and_eval_is_its_own_series():
    path = FIXTURES / "hf_healthy_trainer_state.json"
    log = json.loads(path.read_text())["log_history"]
    h = read_log(path)
    train = [e for e in log if "loss" in e]
    assert h.series("loss")[1].tolist() == [e["loss"] for e in train]  # not the summary's mean train_loss
    assert "train_loss" not in h.columns and "train_runtime" not in h.columns
    assert h.series("eval_loss")[0].tolist() == [e["step"] for e in log if "eval_loss" in e]
    assert h.series("lr")[1].tolist() == [e["learning_rate"] for e in train]
    d = diagnose(h)
    assert any("warmup" in e for e in d.evidence) and any("decayed" in e for e in d.evidence)
    assert not any("no gradient columns" in e for e in d.evidence)  # grad_norm was logged


def test_a_log_without_gradient_columns_says_what_it_cannot_show():
    d = diagnose(FIXTURES / "keras_healthy.csv")
    note = next(e for e in d.evidence if "no gradient columns" in e)
    assert "OSCILLATING" in note and "STALLED" in note


# ---------------------------------------------------------------------- names and options


def test_names_match_in_any_case_with_aliases(tmp_path):
    path = tmp_path / "run.csv"
    path.write_text("Global_Step,Training_Loss,Learning_Rate,Grad_Norm\n" +
                    "".join(f"{s},{2 * 0.98 ** s!r},0.01,{1.0 / s}\n" for s in range(1, 80)))
    h = read_log(path)
    assert h.columns == ["step", "loss", "grad_norm", "lr"]
    assert h.steps[0] == 1 and h["lr"][0] == 0.01


def test_loss_step_and_lr_options_pick_columns(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps({"it": s, "obj": 1.0 / s, "loss": 5.0, "eta": 0.1}) + "\n"
                            for s in range(1, 50)))
    h = read_log(path, loss="OBJ", step="it", lr="eta")
    assert h.series("loss")[1][0] == 1.0 and h["lr"][0] == 0.1 and h.steps[0] == 1
    assert h["loss_unused"][0] == 5.0  # the column that was called loss is kept, not read as the loss
    for option in ("loss", "step", "lr"):
        with pytest.raises(LogError, match=f"--{option} 'nope': the log has no such column"):
            read_log(path, **{"step": "it", option: "nope"})


def test_a_tensorboard_export_of_an_eval_tag_is_not_read_as_the_training_loss(tmp_path):
    path = tmp_path / "run-version_0-tag-val_loss.csv"
    shutil.copy(FIXTURES / "run-lightning_healthy-tag-train_loss.csv", path)
    with pytest.raises(LogError, match="eval loss is 'Value', but the verdict needs the training loss"):
        read_log(path)


# ---------------------------------------------------------------------- overfitting


def _run(eval_curve, seed, n=40, noise=0.02):
    rng = np.random.default_rng(seed)
    steps = np.arange(1, 401)
    train = 2.0 * np.exp(-steps / 120) + 0.1 + noise * rng.standard_normal(len(steps))
    at = steps[9::10][:n]
    val = eval_curve(at / 400) + noise * rng.standard_normal(len(at))
    eval_col = [None] * len(steps)
    for s, v in zip(at, val):
        eval_col[s - 1] = float(v)
    return History({"step": steps, "loss": train, "eval_loss": eval_col})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eval_rising_against_its_noise_while_train_falls_is_overfitting(seed):
    d = diagnose(_run(lambda x: 1.0 + 0.8 * (x - 0.4) ** 2, seed))  # a U: best near 40% of the run
    over = d.signals["overfitting"]
    assert 100 <= over["best_step"] <= 250 and over["rise"] > 0.05
    assert any("overfitting" in e and "pitfall 4" in e for e in d.evidence)
    assert any(a.startswith(f"stop near step {over['best_step']}") for a in d.advice)
    # the numbers quoted are window means, with the steps they cover (a new user read "rose from 1.016
    # (best, around step 10)" where the eval at step 10 was 0.769: 1.016 was a mean of 8 evals)
    (a, b), (c, z) = over["best_steps"], over["last_steps"]
    h = _run(lambda x: 1.0 + 0.8 * (x - 0.4) ** 2, seed)
    steps, ev = h.series("eval_loss")
    assert over["best"] == pytest.approx(ev[(steps >= a) & (steps <= b)].mean())
    assert over["last"] == pytest.approx(ev[(steps >= c) & (steps <= z)].mean())
    assert any(f"mean of {fmt(over['best'])} over steps {a}-{b}" in e for e in d.evidence), d.evidence


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("curve", [lambda x: 1.0 + 0 * x, lambda x: 1.0 - 0.3 * x],
                         ids=["flat_noise", "falling"])
def test_a_flat_or_falling_eval_loss_is_not_overfitting(seed, curve):
    assert overfitting(_run(curve, seed)) is None
    assert "overfitting" not in diagnose(_run(curve, seed)).signals


def test_the_lightning_overfitting_run_is_told_and_its_healthy_runs_are_not():
    d = diagnose(FIXTURES / "lightning_overfit.csv")
    assert d.signals["overfitting"]["column"] == "val_loss", str(d)
    for name in ("lightning_healthy.csv", "hf_healthy_trainer_state.json", "keras_healthy.csv"):
        assert "overfitting" not in diagnose(FIXTURES / name).signals, name


# ---------------------------------------------------------------------- unreadable


@pytest.mark.parametrize("name, text, needles", [
    ("state.json", '{\n  "global_step": 3,\n  "epoch": 1\n}\n', ["one JSON document", "'global_step'", "log_history"]),
    ("state.json", '{"log_history": [{"loss": 1.0}]}', ["log_history[0] has no 'step'", "'loss'"]),
    ("state.json", '{"log_history": 5}', ["'log_history' is int"]),
    ("state.json", '{"log_history": [{"step": 2, "loss": 1}, {"step": 1, "loss": 1}]}',
     ["step 1 comes after step 2"]),
    ("export.json", "[[1.0, 1, 0.5], [2.0, 2]]", ["item [1] is a list of 2", "[wall_time, step, value]"]),
    ("metrics.csv", "epoch,step,val_acc\n0,1,0.5\n", ["no 'loss' column", "'val_acc'", "Lightning", "--loss"]),
    ("keras.csv", "epoch,acc\n0,0.5\n", ["no 'loss' column", "'acc'", "Keras"]),
    ("wandb.csv", ",_step,_runtime,train/acc\n0,0,1.0,0.5\n", ["no 'loss' column", "'train/acc'", "Weights"]),
    ("plain.csv", "when,loss\n1,0.5\n", ["no 'step' column", "'when'", "--step"]),
])
def test_an_unreadable_log_names_what_it_found_and_what_is_needed(tmp_path, name, text, needles):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(LogError) as info:
        read_log(path)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_a_folder_without_a_log_names_what_it_holds(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(LogError, match=r"is a directory without a log \(it holds: 'notes.txt'\).*metrics.csv"):
        read_log(tmp_path)


def test_every_format_is_listed_in_the_cli_help_and_unreadable_is_exit_2(tmp_path, refused):
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from adaopt.cli.app import LOG_FORMATS, app

    runner = CliRunner()
    help_text = " ".join(runner.invoke(app, ["diagnose", "--help"]).output.split())
    for words in ("Lightning CSVLogger", "trainer_state.json", "TensorBoard event", "Keras CSVLogger",
                  "Weights & Biases", "JSON Lines"):
        assert words in LOG_FORMATS and words in help_text, words
    assert len(FORMATS) == 10
    bad = tmp_path / "state.json"
    bad.write_text('{\n  "global_step": 3\n}\n')
    refused(runner.invoke(app, ["diagnose", str(bad)]), "one JSON document")
    ok = runner.invoke(app, ["diagnose", str(FIXTURES / "lightning_layout"), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["verdict"] in HEALTHY
    assert "version_1, the newest of 2" in ok.stderr
    over = runner.invoke(app, ["diagnose", str(FIXTURES / "lightning_overfit.csv")])
    assert over.exit_code == 1 and "overfitting" in over.stdout
    named = runner.invoke(app, ["diagnose", str(FIXTURES / "hf_healthy_trainer_state.json"), "--loss", "eval_loss",
                                "--lr", "learning_rate"])
    assert named.exit_code == 0, named.output


def test_a_document_over_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from adaopt.diagnostics.logs import documents

    monkeypatch.setattr(documents, "MAX_DOCUMENT_BYTES", 1000)
    path = tmp_path / "trainer_state.json"
    shutil.copy(FIXTURES / "hf_healthy_trainer_state.json", path)
    with pytest.raises(LogError, match="more than 1000 bytes"):
        read_log(path)


def test_a_broken_event_file_is_a_log_error(tmp_path):
    pytest.importorskip("tensorboard")
    path = tmp_path / "events.out.tfevents.1.vm.1.0"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(LogError, match="TensorBoard"):
        read_log(path)
    cut = tmp_path / "cut" / "events.out.tfevents.2.vm.1.0"
    cut.parent.mkdir()
    cut.write_bytes((FIXTURES / "events.out.tfevents.lightning_healthy").read_bytes()[:100])
    with pytest.raises(LogError, match="TensorBoard"):
        read_log(cut)


def test_tensorboard_tutorial_tags_and_the_callbacks_own_measures_are_read(tmp_path):
    """PyTorch's TensorBoard tutorial logs Loss/train and Loss/val; adaopt's DiagnosisCallbacks
    log adaopt/cos_grad, adaopt/update_ratio, ... : each is read under the name the verdicts use."""
    path = tmp_path / "run.csv"
    rows = ["step,Loss/train,Loss/val,adaopt/cos_grad,adaopt/update_ratio,adaopt/grad_norm,grad_norm"]
    rows += [f"{i},{1 / i},{1 / i + 0.1},0.3,0.01,{1 / i},{2 / i}" for i in range(1, 40)]
    path.write_text("\n".join(rows) + "\n")
    h = read_log(path)
    assert h.has("loss") and h.has("cos_grad") and h.has("update_ratio")
    assert np.allclose(h["loss"], [1 / i for i in range(1, 40)])
    assert np.allclose(h["grad_norm"], [2 / i for i in range(1, 40)])  # the logged one, not ours twice
    assert "Loss/val" in h.columns
