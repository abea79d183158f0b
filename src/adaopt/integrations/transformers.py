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

from ._watch import Watch, check_arguments, check_stop_on


class DiagnosisCallback(TrainerCallback, ExportableState):
    """Watch a Hugging Face Trainer's optimizer and say how the run went.

    Arguments and attributes as :class:`adaopt.integrations.lightning.DiagnosisCallback`'s:
    ``every``, ``sample``, ``stop_on``, ``verbose``; after training ``diagnosis``,
    ``stopped`` and ``history``.
    """

    def __init__(self, *, every: int = 10, sample: int = 1024, stop_on=(), verbose: bool = True, target=None):
        self.every, self.sample, self.verbose, self.target = every, sample, verbose, target
        check_arguments("DiagnosisCallback", every, sample, verbose)
        self.stop_on = check_stop_on(stop_on)
        self.watch = None
        self.diagnosis = self.stopped = self.history = None
        self._hook, self._losses, self._from_model = None, [], False
        self._resumed = None  # a checkpoint's monitor state (set by the Trainer on a resume)

    def state(self) -> dict:
        """What the Trainer saves in a checkpoint: the arguments, and the Monitor's state with
        its per-step rows and logged values packed (base64 of float64, presence as bits) so
        ``trainer_state.json`` stays small: 118 bytes a step, where the list of dicts made it 167."""
        monitor = None if self.watch is None else _packed(self.watch.monitor.state_dict())
        return {"args": {"every": self.every, "sample": self.sample, "stop_on": list(self.stop_on),
                         "verbose": self.verbose, "target": self.target},
                "attributes": {"_resumed": monitor if monitor is not None else self._resumed}}

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if optimizer is None:
            raise ValueError("DiagnosisCallback: the Trainer passed no optimizer to watch")
        resumed_bare = self._resumed is None and state.global_step > 0
        self.watch = Watch(optimizer, every=self.every, sample=self.sample, stop_on=self.stop_on,
                           first_step=state.global_step + 1 if resumed_bare else 1)
        if self._resumed is not None:
            self.watch.monitor.load_state_dict(_unpacked(self._resumed))
            self._resumed = None
        elif resumed_bare:
            warnings.warn(f"DiagnosisCallback: training resumed at step {state.global_step} without the monitor's "
                          f"history, so the verdict covers only the steps from here (numbered on from "
                          f"{state.global_step + 1}); TrainingArguments(restore_callback_states_from_checkpoint=True) "
                          "carries it over", stacklevel=2)
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
        if "loss" not in logs and "grad_norm" not in logs:  # an eval record, or train()'s closing summary
            return
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


def _b64(values, dtype) -> str:
    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode("ascii")


def _unb64(text: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


def _bits(flags) -> str:
    return base64.b64encode(np.packbits(np.asarray(flags, dtype=bool)).tobytes()).decode("ascii")


def _unbits(text: str, n: int) -> np.ndarray:
    return np.unpackbits(_unb64(text, "u1"), count=n).astype(bool)


def _packed(monitor_state: dict) -> dict:
    """The Monitor's state with its per-step rows and logged values as base64 strings of float64
    (JSON would put every number, and every key of every step, on a line of its own)."""
    rows = np.asarray(monitor_state["rows"], dtype="<f8")
    extra = monitor_state["extra"]
    columns: dict = {}
    for i, e in enumerate(extra):
        for k in e or ():
            columns.setdefault(k, [])
    packed_extra = {"steps": len(extra), "none": _bits([e is None for e in extra]), "columns": {}}
    for k in columns:  # per logged name: on which steps it is there, which of those are None, the numbers
        here = [e is not None and k in e for e in extra]
        values = [e[k] for e, h in zip(extra, here) if h]
        packed_extra["columns"][k] = {"present": _bits(here), "null": _bits([v is None for v in values]),
                                      "float64_base64": _b64([np.nan if v is None else v for v in values], "<f8")}
    return {**monitor_state, "rows": {"float64_base64": _b64(rows, "<f8"), "shape": list(rows.shape)},
            "extra": packed_extra}


def _unpacked(saved: dict) -> dict:
    """:func:`_packed`'s inverse (a state saved before the logged values were packed passes as it is)."""
    out = dict(saved)
    rows = saved.get("rows")
    if isinstance(rows, dict):
        data = _unb64(rows["float64_base64"], "<f8")
        out["rows"] = data.reshape(rows["shape"]).tolist() if data.size else []
    extra = saved.get("extra")
    if isinstance(extra, dict):
        n = int(extra["steps"])
        steps = [None if none else {} for none in _unbits(extra["none"], n).tolist()]
        for k, col in extra["columns"].items():
            where = np.flatnonzero(_unbits(col["present"], n))
            nulls, values = _unbits(col["null"], len(where)), _unb64(col["float64_base64"], "<f8")
            if len(values) != len(where) or any(steps[i] is None for i in where.tolist()):
                raise ValueError(f"DiagnosisCallback: the monitor state in the checkpoint is inconsistent: {k!r} has "
                                 f"{len(values)} values for {len(where)} steps, or is on a step with none")
            for i, v, null in zip(where.tolist(), values.tolist(), nulls.tolist()):
                steps[i][k] = None if null else v
        out["extra"] = steps
    return out
