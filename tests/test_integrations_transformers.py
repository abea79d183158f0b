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
    assert len(lost.history) == 20
