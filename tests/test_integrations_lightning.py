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


def _fit(tmp_path, seed, *, lr=0.02, jump=1.0, steps=120, trainer_kw=None, module=None, **options):
    from lightning.pytorch.loggers import CSVLogger

    torch.manual_seed(seed)
    X = torch.randn(512, 4)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(512, 1)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16, shuffle=True)
    callback = DiagnosisCallback(**options)
    trainer = L.Trainer(max_steps=steps, logger=CSVLogger(tmp_path), log_every_n_steps=5, callbacks=[callback],
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        accelerator="cpu", **(trainer_kw or {}))
    trainer.fit(module or Regression(lr, jump), data)
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
    assert DiagnosisCallback(stop_on=["nonfinite", "Diverging"]).stop_on == ("NONFINITE", "DIVERGING")


@pytest.mark.parametrize("kw, match", [({"every": 0}, r"every=0\): the state summary interval"),
                                       ({"every": 2.5}, r"every=2.5\)"), ({"sample": -1}, r"sample=-1\)"),
                                       ({"verbose": "yes"}, r"verbose='yes'\)")])
def test_bad_arguments_are_refused_when_the_callback_is_made(kw, match):
    """A trial: every=0, sample=-1 and every=2.5 passed here and failed only inside fit();
    verbose="yes" passed silently. The transformers callback shares the check."""
    with pytest.raises((ValueError, TypeError), match=match):
        DiagnosisCallback(**kw)


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


class Recording(Regression):
    """A Regression that keeps every batch's loss, as training_step computed it."""

    def __init__(self, lr, jump):
        super().__init__(lr, jump)
        self.batch_losses = []

    def training_step(self, batch, i):
        loss = super().training_step(batch, i)
        self.batch_losses.append(float(loss.detach()))
        return loss


def test_with_gradient_accumulation_a_step_has_the_mean_loss_of_its_batches_and_one_log_row(tmp_path):
    """A trial: with accumulate_grad_batches=2 the monitor took the first batch's loss halved (Lightning
    hands each batch's loss on divided by N), and logged its measures once per batch under one step,
    so adaopt diagnose refused the CSVLogger's metrics.csv ("step 3 has ... there already")."""
    from adaopt.diagnostics.logs import read_log

    module = Recording(0.02, 1.0)
    trainer, callback = _fit(tmp_path, 0, steps=40, module=module, trainer_kw={"accumulate_grad_batches": 2})
    h = callback.history
    assert trainer.global_step == 40 and len(h) == 40 and len(module.batch_losses) == 80
    means = torch.tensor(module.batch_losses).reshape(40, 2).mean(1)
    torch.testing.assert_close(torch.tensor(h["loss"], dtype=torch.float32), means, rtol=1e-5, atol=1e-6)
    log = read_log(trainer.logger.log_dir + "/metrics.csv")  # refused before: two rows of one step
    assert log.has("adaopt/grad_norm") or log.has("grad_norm")


class OneCycleMLP(L.LightningModule):
    """A trial's module: an 8-32-1 tanh MLP, adaopt.torch AdamW (weight decay 0.01) under OneCycleLR."""

    def __init__(self, total):
        super().__init__()
        self.total = total
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

    def training_step(self, batch, i):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        import adaopt.torch as at

        opt = at.AdamW(self.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=self.total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_run_stopped_by_the_end_of_its_schedule_is_not_blamed_on_weight_decay(seed):
    """A trial: AdamW under OneCycle with gradients clipped to 0.05 stopped at 0.24 as the lr ran
    out and was told "CONVERGED: the gradient balances the weight decay; weight_decay = 0.01 sets this
    point", while each step moved 10-100x what that decay pulls."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(512, 8, generator=g)
    y = X @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(512, 1, generator=g)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=32)
    torch.manual_seed(seed)
    callback = DiagnosisCallback(verbose=False)
    trainer = L.Trainer(max_epochs=4, logger=False, callbacks=[callback], gradient_clip_val=0.05,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        accelerator="cpu")
    trainer.fit(OneCycleMLP(64), data)
    d = callback.diagnosis
    assert d.code != "weight_decay" and not any("weight_decay" in a for a in d.advice), str(d)
    assert not any("lr x 3: lr = " in a for a in d.advice), str(d)  # x3 of the schedule's last lr says nothing
