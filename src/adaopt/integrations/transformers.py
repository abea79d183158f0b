"""``DiagnosisCallback`` for the Hugging Face ``Trainer``: a Monitor on its optimizer, its
measures in the Trainer's logs, the verdict when training ends, and an optional stop.

>>> from adaopt.integrations.transformers import DiagnosisCallback   # doctest: +SKIP
>>> trainer = Trainer(model, args, train_dataset=ds, callbacks=[DiagnosisCallback(stop_on="DIVERGING")])  # doctest: +SKIP
>>> trainer.train()                                                  # doctest: +SKIP

The loss of each step is read from the model's own output (``outputs.loss``, by a forward
hook, in training mode only; the mean over the forwards of a step, as with gradient
accumulation); a model whose output carries no loss is given the Trainer's logged ``loss``
instead, every ``logging_steps``. On every log the Monitor's last measures are added as
``adaopt/grad_norm``, ... to the Trainer's log record (``state.log_history``, saved in
``trainer_state.json``, which ``adaopt diagnose`` reads) and to the logs the callbacks after
this one see (the Trainer puts its reporters, TensorBoard or W&B, before the callbacks it is
given: to send them the measures too, ``trainer.callback_handler.callbacks.insert(0, cb)``). With ``stop_on``, every step runs the Monitor's cheap
``check`` and, on one of those verdicts, sets ``control.should_training_stop``.

The Monitor's history is saved in each checkpoint's ``trainer_state.json`` (the callback is an
``ExportableState``); ``trainer.train(resume_from_checkpoint=...)`` goes on with it when
``TrainingArguments(restore_callback_states_from_checkpoint=True)``, the Trainer's own switch
(off by default: then the resumed run is watched from the resume, and a warning says so). On
such a restore the Trainer puts a new callback, made from the checkpoint, in place of the one it
was given: read ``diagnosis`` and ``history`` from the one in ``trainer.callback_handler.callbacks``.
"""

from __future__ import annotations

import base64
import warnings

import numpy as np

try:
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState
except ImportError as exc:
    raise ImportError("adaopt.integrations.transformers needs transformers: pip install "
                      f"'adaopt[transformers]' ({exc})") from None

from ._watch import Watch, check_stop_on


class DiagnosisCallback(TrainerCallback, ExportableState):
    """Watch a Hugging Face Trainer's optimizer and say how the run went.

    Arguments and attributes as :class:`adaopt.integrations.lightning.DiagnosisCallback`'s:
    ``every``, ``sample``, ``stop_on``, ``verbose``; after training ``diagnosis``,
    ``stopped`` and ``history``.
    """

    def __init__(self, *, every: int = 10, sample: int = 1024, stop_on=(), verbose: bool = True, target=None):
        self.every, self.sample, self.verbose, self.target = every, sample, verbose, target
        self.stop_on = check_stop_on(stop_on)
        self.watch = None
        self.diagnosis = self.stopped = self.history = None
        self._hook, self._losses, self._from_model = None, [], False
        self._resumed = None  # a checkpoint's monitor state (set by the Trainer on a resume)

    def state(self) -> dict:
        """What the Trainer saves in a checkpoint: the arguments, and the Monitor's state with
        its per-step rows packed (base64 of float64) so ``trainer_state.json`` stays small."""
        monitor = None if self.watch is None else _packed(self.watch.monitor.state_dict())
        return {"args": {"every": self.every, "sample": self.sample, "stop_on": list(self.stop_on),
                         "verbose": self.verbose, "target": self.target},
                "attributes": {"_resumed": monitor if monitor is not None else self._resumed}}

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if optimizer is None:
            raise ValueError("DiagnosisCallback: the Trainer passed no optimizer to watch")
        self.watch = Watch(optimizer, every=self.every, sample=self.sample, stop_on=self.stop_on)
        if self._resumed is not None:
            self.watch.monitor.load_state_dict(_unpacked(self._resumed))
            self._resumed = None
        elif state.global_step > 0:
            warnings.warn(f"DiagnosisCallback: training resumed at step {state.global_step} without the monitor's "
                          "history, so the verdict covers only the steps from here (and numbers them from 1); "
                          "TrainingArguments(restore_callback_states_from_checkpoint=True) carries it over",
                          stacklevel=2)
        if model is not None:
            self._hook = model.register_forward_hook(self._take_loss)

    def _take_loss(self, module, inputs, output) -> None:
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if module.training and loss is not None:
            self._losses.append(float(loss.detach().float().mean()))
            self._from_model = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.watch is None:
            return
        if self._losses:
            self.watch.log(sum(self._losses) / len(self._losses))
            self._losses = []
        if self.watch.should_stop():
            control.should_training_stop = True
            self.stopped = self.watch.stopped

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.watch is None or logs is None:
            return
        if not self._from_model and "loss" in logs:
            self.watch.log(logs["loss"])
        measures = self.watch.measures()
        logs.update(measures)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(measures)  # the record just written: into trainer_state.json

    def on_train_end(self, args, state, control, **kwargs):
        if self.watch is None:
            return
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.history = self.watch.monitor.history
        self.diagnosis = self.watch.finish(show=self.verbose and state.is_world_process_zero, target=self.target)
        self.watch = None


def _packed(monitor_state: dict) -> dict:
    """The Monitor's state with its rows as one base64 string of float64 (JSON would put every
    number on a line of its own)."""
    rows = np.asarray(monitor_state["rows"], dtype="<f8")
    return {**monitor_state, "rows": {"float64_base64": base64.b64encode(rows.tobytes()).decode("ascii"),
                                      "shape": list(rows.shape)}}


def _unpacked(saved: dict) -> dict:
    rows = saved.get("rows")
    if isinstance(rows, dict):
        data = np.frombuffer(base64.b64decode(rows["float64_base64"]), dtype="<f8")
        rows = data.reshape(rows["shape"]).tolist() if data.size else []
    return {**saved, "rows": rows}
