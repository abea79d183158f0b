"""``DiagnosisCallback`` for Lightning: a Monitor on the trainer's optimizer, its measures in
the trainer's loggers, the verdict at the end of ``fit``, and an optional stop.

>>> from adaopt.integrations.lightning import DiagnosisCallback   # doctest: +SKIP
>>> trainer = L.Trainer(callbacks=[DiagnosisCallback(stop_on=("NONFINITE", "DIVERGING"))])  # doctest: +SKIP
>>> trainer.fit(model); print(trainer.callbacks[0].diagnosis)      # doctest: +SKIP

The loss of each step is the one ``training_step`` returned (``outputs["loss"]``), taken
after the optimizer's step; with ``accumulate_grad_batches=N``, the mean over the N batches
whose gradients made the step (Lightning hands each batch's loss on divided by N: their sum).
Every ``log_every_n_steps`` optimizer steps the Monitor's last measures go to
every logger as ``adaopt/grad_norm``, ``adaopt/update_ratio``, ``adaopt/cos_update``, ...
With ``stop_on``, every step runs the Monitor's cheap ``check`` and, on one of those
verdicts, sets ``trainer.should_stop``: Lightning ends the fit after that batch.

The Monitor's history is part of the trainer's checkpoints (the callback's ``state_dict``),
so ``trainer.fit(model, ckpt_path=...)`` goes on with it: the verdict at the end covers the
whole run, not only the steps after the resume.
"""

from __future__ import annotations

try:
    from lightning.pytorch import Callback
except ImportError:  # the older package name
    try:
        from pytorch_lightning import Callback
    except ImportError as exc:
        raise ImportError("adaopt.integrations.lightning needs Lightning: pip install 'adaopt[lightning]' "
                          f"(or lightning) ({exc})") from None

from ._watch import Watch, check_arguments, check_stop_on


class DiagnosisCallback(Callback):
    """Watch the first optimizer of a Lightning fit and say how the run went.

    ``every``/``sample``: as :class:`~adaopt.diagnostics.Monitor`'s (the state summary
    interval, the coordinates sampled). ``stop_on``: verdicts that stop the fit (of
    ``ALARMS``: ``"NONFINITE"``, ``"DIVERGING"``). ``verbose``: print the verdict when the
    fit ends (on the global rank 0). After ``fit``: ``diagnosis`` (the verdict),
    ``stopped`` (the one that stopped it, or None) and ``history`` (the Monitor's).
    """

    def __init__(self, *, every: int = 10, sample: int = 1024, stop_on=(), verbose: bool = True, target=None):
        self.every, self.sample, self.verbose, self.target = every, sample, verbose, target
        check_arguments("DiagnosisCallback", every, sample, verbose)
        self.stop_on = check_stop_on(stop_on)
        self.watch = None
        self.diagnosis = self.stopped = self.history = None
        self._resumed = None  # a checkpoint's monitor state, loaded when the fit starts
        self._losses, self._steps_seen = [], None  # the batches' losses since the optimizer last stepped

    def state_dict(self) -> dict:
        """The Monitor's state (:meth:`~adaopt.diagnostics.Monitor.state_dict`), saved in the checkpoint."""
        if self.watch is None:
            return {} if self._resumed is None else {"monitor": self._resumed}
        return {"monitor": self.watch.monitor.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resumed = state_dict.get("monitor")

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.optimizers:
            raise ValueError("DiagnosisCallback: the trainer has no optimizer to watch (configure_optimizers "
                             "returned none)")
        self.watch = Watch(trainer.optimizers[0], every=self.every, sample=self.sample, stop_on=self.stop_on)
        self._losses, self._steps_seen = [], trainer.global_step
        if self._resumed is not None:
            self.watch.monitor.load_state_dict(self._resumed)
            self._resumed = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.watch is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(loss.detach() if hasattr(loss, "detach") else loss)
        if trainer.global_step == self._steps_seen:  # accumulating: the optimizer did not step on this batch
            return
        self._steps_seen = trainer.global_step
        losses, self._losses = self._losses, []
        if losses:  # automatic optimization divides each batch's loss by N: the sum is the mean; manual: the mean
            total = sum(losses[1:], losses[0])
            self.watch.log(total if pl_module.automatic_optimization else total / len(losses))
        every = max(1, getattr(trainer, "log_every_n_steps", 50))
        # the step Lightning gives its own rows of this batch (logged after this hook), so a
        # CSVLogger's metrics.csv keeps one increasing step column
        step = getattr(getattr(trainer.fit_loop, "epoch_loop", None), "_batches_that_stepped", trainer.global_step)
        if trainer.loggers and (step + 1) % every == 0:
            measures = self.watch.measures()
            if measures:
                for logger in trainer.loggers:
                    logger.log_metrics(measures, step=step)
        if self.watch.should_stop():
            trainer.should_stop = True
            self.stopped = self.watch.stopped

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.watch is None:
            return
        self.history = self.watch.monitor.history
        self.diagnosis = self.watch.finish(show=self.verbose and trainer.is_global_zero, target=self.target)
        self.watch = None
