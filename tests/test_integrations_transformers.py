"""adaopt.integrations.transformers.DiagnosisCallback on a real Hugging Face Trainer.train
(a tiny torch module the Trainer accepts, CPU, nothing downloaded)."""

from __future__ import annotations

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
torch = pytest.importorskip("torch")

from adaopt.integrations.transformers import DiagnosisCallback  # noqa: E402

ONSET = 30  # the step the lr jumps 2000-fold at, in the diverging run


class Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def forward(self, x, labels=None):
        out = self.net(x)
        return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}


class Data(torch.utils.data.Dataset):
    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(2048, 4, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(2048, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def _train(tmp_path, seed, *, jump=1.0, steps=120, **options):
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(seed)
    model = Regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: jump if t >= ONSET else 1.0)
    args = TrainingArguments(str(tmp_path), max_steps=steps, per_device_train_batch_size=64, logging_steps=10,
                             report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, seed=seed,
                             max_grad_norm=0.0, log_level="error")
    callback = DiagnosisCallback(**options)
    trainer = Trainer(model=model, args=args, train_dataset=Data(seed), optimizers=(opt, sched),
                      callbacks=[callback])
    trainer.train()
    return trainer, callback


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_healthy_train_gets_a_verdict_and_its_measures_reach_the_logs(tmp_path, seed, capsys):
    trainer, callback = _train(tmp_path, seed)
    assert callback.diagnosis.verdict in ("CONVERGING", "CONVERGED"), str(callback.diagnosis)
    assert callback.stopped is None and trainer.state.global_step == 120
    h = callback.history
    assert len(h) == 120 and h.present("loss").all() and h.has("grad_norm")  # the loss of every step
    assert "adaopt: " + callback.diagnosis.verdict in capsys.readouterr().out
    logged = [e for e in trainer.state.log_history if "adaopt/grad_norm" in e and "loss" in e]
    assert len(logged) == 12 and all(e["adaopt/grad_norm"] > 0 for e in logged)
    # train()'s closing summary (train_runtime, ...) gets no stale measures (a trial saw them there)
    assert not any("adaopt/grad_norm" in e for e in trainer.state.log_history if "train_runtime" in e)
    trainer.state.save_to_json(str(tmp_path / "trainer_state.json"))  # and adaopt diagnose reads them back
    from adaopt.diagnostics import read_log

    back = read_log(tmp_path)
    assert back.series("adaopt/grad_norm")[1].tolist() == [e["adaopt/grad_norm"] for e in logged]
    # the Monitor's ||g|| (all 5 coordinates, float64) is the Trainer's (float32): to float32 rounding
    assert np.allclose(back.series("adaopt/grad_norm")[1], back.series("grad_norm")[1], rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stop_on_stops_a_diverging_train_within_20_steps_of_its_onset(tmp_path, seed):
    trainer, callback = _train(tmp_path, seed, jump=2000.0, stop_on="DIVERGING")
    assert callback.stopped is not None and callback.stopped.verdict == "DIVERGING"
    assert ONSET < trainer.state.global_step <= ONSET + 20, trainer.state.global_step
    if seed == 0:  # without stop_on the same run goes on to the end (once: the trainings cost seconds)
        free, watched = _train(tmp_path / "free", seed, jump=2000.0)
        assert free.state.global_step == 120 and watched.diagnosis.verdict in ("NONFINITE", "DIVERGING")


def _resumable(tmp_path, steps, callback, resume=None, restore=True):
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = Regression()
    args = TrainingArguments(str(tmp_path), max_steps=steps, per_device_train_batch_size=64, logging_steps=10,
                             report_to=[], save_strategy="steps", save_steps=40, use_cpu=True, disable_tqdm=True,
                             seed=0, max_grad_norm=0.0, log_level="error", learning_rate=0.02, optim="sgd",
                             lr_scheduler_type="constant", restore_callback_states_from_checkpoint=restore)
    trainer = Trainer(model=model, args=args, train_dataset=Data(0), callbacks=[callback])
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_a_resumed_train_keeps_the_monitors_history(tmp_path):
    """The history is in the checkpoint's trainer_state.json; with the Trainer's
    restore_callback_states_from_checkpoint the resumed run's history has every step."""
    first = DiagnosisCallback(verbose=False)
    _resumable(tmp_path, 40, first)
    checkpoint = tmp_path / "checkpoint-40"
    assert (checkpoint / "trainer_state.json").stat().st_size < 40_000  # the rows packed, not a line a number
    resumed = DiagnosisCallback(verbose=False)
    trainer = _resumable(tmp_path, 100, resumed, resume=str(checkpoint))
    assert trainer.state.global_step == 100
    restored = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, DiagnosisCallback)]
    assert len(restored) == 1  # the Trainer put a callback made from the saved state in its place
    h = restored[0].history
    assert list(h.steps) == list(range(1, 101)) and h.present("loss").all()
    assert np.array_equal(h["loss"][:40], first.history["loss"])
    assert restored[0].diagnosis.verdict in ("CONVERGING", "CONVERGED"), str(restored[0].diagnosis)
    # without the Trainer's switch the history is lost, and a warning says how to keep it
    lost = DiagnosisCallback(verbose=False)
    with pytest.warns(UserWarning, match="restore_callback_states_from_checkpoint=True"):
        _resumable(tmp_path / "again", 60, lost, resume=str(checkpoint), restore=False)
    # numbered on from the resume (a trial saw steps 1-20 here), and the verdict says where it begins
    assert len(lost.history) == 20 and list(lost.history.steps) == list(range(41, 61))
    assert "note: the log begins at step 41" in "\n".join(lost.diagnosis.evidence)


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN (a NaN loss is a logged value too)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (np.isnan(a) and np.isnan(b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_the_saved_monitor_state_is_packed_small_and_comes_back_exactly():
    """trainer_state.json is written with indent=2: unpacked, every number and every key of
    every step is a line of its own. Packed, 3000 steps take a fraction of that, and the state
    comes back as it was (NaN loss, summaries every 10 steps)."""
    import json

    import adaopt
    from adaopt.diagnostics import Monitor
    from adaopt.integrations.transformers import _packed, _unpacked

    x = np.random.default_rng(0).standard_normal(50).astype(np.float32)
    opt = adaopt.Adam([x], lr=1e-2)
    monitor = Monitor(opt)
    for t in range(3000):
        monitor.log(float("nan") if t == 5 else float((x ** 2).sum()))
        opt.step([x.copy()])
    state = monitor.state_dict()
    summaries = sum(1 for e in state["extra"] if e and "eff_lr_p50" in e)
    assert np.isnan(state["extra"][5]["loss"]) and 100 < summaries < 3000
    text = json.dumps(_packed(state), indent=2)
    assert len(text) < len(json.dumps(state, indent=2)) / 2
    # was a list of 3000 dicts; the lr beside every loss (what check() read) adds 3000 float64s, 32 KB
    assert len(json.dumps(_packed(state)["extra"])) < 120_000
    back = _unpacked(json.loads(text))
    assert _same(back, state)
    resumed = Monitor(adaopt.Adam([x.copy()], lr=1e-2))
    resumed.load_state_dict(back)
    assert len(resumed.history) == 3000
    broken = json.loads(text)
    broken["extra"]["columns"]["loss"]["float64_base64"] = broken["extra"]["columns"]["eff_lr_p50"]["float64_base64"]
    with pytest.raises(ValueError, match=f"'loss' has {summaries} values for 3000 steps"):
        _unpacked(broken)
