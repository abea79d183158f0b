"""adaopt.integrations.lightning.DiagnosisCallback on a real Lightning Trainer.fit (CPU, seconds)."""

from __future__ import annotations

import csv

import pytest

L = pytest.importorskip("lightning")
torch = pytest.importorskip("torch")

from adaopt.integrations.lightning import DiagnosisCallback  # noqa: E402

ONSET = 30  # the step the lr jumps 2000-fold at, in the diverging run


class Regression(L.LightningModule):
    """A linear regression whose lr can jump at ONSET (the diverging run)."""

    def __init__(self, lr, jump):
        super().__init__()
        self.lr, self.jump = lr, jump
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, i):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: self.jump if t >= ONSET else 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _fit(tmp_path, seed, *, lr=0.02, jump=1.0, steps=120, **options):
    from lightning.pytorch.loggers import CSVLogger

    torch.manual_seed(seed)
    X = torch.randn(512, 4)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(512, 1)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16, shuffle=True)
    callback = DiagnosisCallback(**options)
    trainer = L.Trainer(max_steps=steps, logger=CSVLogger(tmp_path), log_every_n_steps=5, callbacks=[callback],
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        accelerator="cpu")
    trainer.fit(Regression(lr, jump), data)
    return trainer, callback


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_healthy_fit_gets_a_verdict_and_its_measures_reach_the_logger(tmp_path, seed, capsys):
    trainer, callback = _fit(tmp_path, seed)
    assert callback.diagnosis.verdict in ("CONVERGING", "CONVERGED"), str(callback.diagnosis)
    assert callback.stopped is None and trainer.global_step == 120
    h = callback.history
    assert len(h) == 120 and h.present("loss").all() and h.has("grad_norm") and h.has("update_ratio")
    assert "adaopt: " + callback.diagnosis.verdict in capsys.readouterr().out
    with open(trainer.logger.log_dir + "/metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    logged = [r for r in rows if r.get("adaopt/grad_norm")]
    assert len(logged) >= 20 and all(float(r["adaopt/grad_norm"]) > 0 for r in logged)
    # the file reads back: the callback's rows share Lightning's steps, and its measures are columns again
    from adaopt.diagnostics.logs import read_log

    back = read_log(trainer.logger.log_dir)
    assert back.has("loss") and back.has("cos_grad") and back.has("update_ratio")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stop_on_stops_a_diverging_fit_within_20_steps_of_its_onset(tmp_path, seed):
    trainer, callback = _fit(tmp_path, seed, jump=2000.0, stop_on=("NONFINITE", "DIVERGING"))
    assert callback.stopped is not None and callback.stopped.verdict in ("NONFINITE", "DIVERGING")
    assert ONSET < trainer.global_step <= ONSET + 20, trainer.global_step
    assert callback.diagnosis is callback.stopped
    if seed == 0:  # without stop_on the same run goes on to the end (once: the trainings cost seconds)
        free, watched = _fit(tmp_path / "free", seed, jump=2000.0)  # without stop_on the run goes on
        assert free.global_step == 120 and watched.diagnosis.verdict in ("NONFINITE", "DIVERGING")


def test_stop_on_takes_only_alarms():
    with pytest.raises(ValueError, match="stop_on=.*only DIVERGING, NONFINITE"):
        DiagnosisCallback(stop_on=("SLOW",))


def test_a_fit_resumed_from_a_checkpoint_keeps_the_monitors_history(tmp_path):
    """The callback's state (the Monitor's) is in the trainer's checkpoint: the resumed fit's
    history has every step, numbered on, and its first rows are the first fit's."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    torch.manual_seed(0)
    X = torch.randn(512, 4)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(512, 1)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)

    def fit(steps, callback, ckpt_path=None):
        saver = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=steps)
        trainer = L.Trainer(max_steps=steps, logger=False, callbacks=[callback, saver], enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu")
        trainer.fit(Regression(0.02, 1.0), data, ckpt_path=ckpt_path)
        return trainer

    first = DiagnosisCallback(verbose=False)
    fit(40, first)
    resumed = DiagnosisCallback(verbose=False)
    trainer = fit(100, resumed, ckpt_path=tmp_path / "last.ckpt")
    assert trainer.global_step == 100
    h = resumed.history
    assert list(h.steps) == list(range(1, 101)) and h.present("loss").all()
    assert torch.equal(torch.as_tensor(h["loss"][:40]), torch.as_tensor(first.history["loss"]))
    assert resumed.diagnosis.verdict in ("CONVERGING", "CONVERGED"), str(resumed.diagnosis)
