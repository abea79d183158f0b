"""Which of a log's columns is the step, the training loss, the eval loss, the lr and the
gradient norm: the names training tools use for them, matched case-insensitively.

Each role has a list of aliases, most specific first; the first alias a log has is taken
(``--step``/``--loss``/``--lr`` name one instead). The roles become the History's own
column names (``step``, ``loss``, ``lr``, ``grad_norm``), so the verdicts read a
Lightning ``train_loss``, a Hugging Face ``learning_rate`` or a W&B ``train/loss`` as they
read a Monitor's columns. An eval loss keeps its name (``val_loss``, ``eval/loss``: the
overfitting check finds it by :data:`EVAL`), but for an export's ``Value``: ``eval_loss``. Step-level losses come before epoch aggregates
(Lightning's ``train_loss_step`` before ``train_loss_epoch``).
"""

from __future__ import annotations

import re
from pathlib import Path

from .checks import LogError, _shown

#: The step, by the names tools give it (Keras CSVLogger's rows are epochs; TensorBoard's export says Step).
STEP = ("step", "global_step", "_step", "trainer/global_step", "iteration", "iter", "epoch")
#: The training loss: plain and Lightning names, HF/W&B ``train/loss``, TensorBoard's export ``Value``.
LOSS = ("loss", "train_loss", "training_loss", "train/loss", "loss/train", "loss/training", "loss_step",
        "train_loss_step", "train/loss_step", "train_loss_epoch", "loss_epoch", "value")
#: The held-out loss (HF eval_loss, Lightning/Keras val_loss, W&B eval/loss).
EVAL = ("eval_loss", "val_loss", "validation_loss", "valid_loss", "eval/loss", "val/loss", "validation/loss",
        "loss/val", "loss/valid", "loss/validation", "loss/eval", "loss/test", "val_loss_epoch", "val_loss_step")
#: The learning rate (HF learning_rate, Lightning's LearningRateMonitor ``lr-Adam``).
LR = ("lr", "learning_rate", "train/learning_rate", "train/lr", "lr-adam", "lr-adamw", "lr-sgd")
#: The gradient norm (HF grad_norm, before clipping; Lightning's grad_norm utility).
GRAD_NORM = ("grad_norm", "train/grad_norm", "gradient_norm", "grad_2.0_norm_total", "adaopt/grad_norm")
#: Columns that are bookkeeping, not evidence (W&B's clock, a pandas index).
IGNORED = ("_runtime", "_timestamp", "wall time", "unnamed: 0", "")
_TAG = re.compile(r"-tag-(.+)$")


def find(names, aliases, given=None, *, what: str, option: str, path=None):
    """The name in ``names`` that ``given`` names (case-insensitively), or else the first of
    ``aliases`` present; None if none. A ``given`` name that is absent is a LogError."""
    lower = {}
    for name in names:
        lower.setdefault(name.lower(), name)
    if given is not None:
        if given.lower() in lower:
            return lower[given.lower()]
        raise LogError(f"{path}: {option} {given!r}: the log has no such column (it has: {listing(names)})")
    for alias in aliases:
        if alias in lower:
            return lower[alias]
    if what == "lr":  # Lightning's LearningRateMonitor: lr-<Optimizer>[/pg<N>]
        return next((n for n in names if n.lower().startswith("lr-")), None)
    return None


def roles(path: Path, names, *, loss=None, lr=None) -> dict:
    """``{column in the log: History name}`` for the loss, eval loss, lr and gradient norm
    columns among ``names``; a LogError naming the columns when there is no training loss."""
    names = [n for n in names if n.lower() not in IGNORED]
    eval_aliases = EVAL
    tag = _TAG.search(path.stem)  # TensorBoard's export, run-<run>-tag-<tag>.csv: its Value is that tag
    if tag and tag.group(1).replace("_", "/").lower() in {a.replace("_", "/") for a in EVAL}:
        eval_aliases = EVAL + ("value",)
    found = {}
    train = find(names, [a for a in LOSS if a not in eval_aliases], loss, what="loss", option="--loss", path=path)
    if train is not None:
        found[train] = "loss"
    held = find([n for n in names if n != train], eval_aliases, what="eval", option="", path=path)
    if held is not None and held.lower() not in EVAL:  # an eval loss keeps its own name (val_loss, eval/loss)
        found[held] = "eval_loss"
    for aliases, role, given, option in ((LR, "lr", lr, "--lr"), (GRAD_NORM, "grad_norm", None, "")):
        name = find([n for n in names if n not in found], aliases, given, what=role, option=option, path=path)
        if name is not None:
            found[name] = role
    if train is None:
        raise no_loss(path, names, held)
    return found | _own([n for n in names if n not in found], taken=set(found.values()))


def _own(names, taken) -> dict:
    """The measures adaopt's DiagnosisCallbacks log as ``adaopt/<column>``, under the
    History's own column names (``adaopt/cos_grad`` is ``cos_grad``)."""
    from ..history import STEP_COLUMNS, SUMMARY_COLUMNS  # here: history imports this package

    known = set(STEP_COLUMNS + SUMMARY_COLUMNS) - {"loss"} - taken
    return {n: n[len("adaopt/"):] for n in names if n.lower().startswith("adaopt/") and n[len("adaopt/"):] in known}


def no_loss(path: Path, names, held=None) -> LogError:
    """The log has no training loss: what it has, and what would be read."""
    also = f"; its eval loss is {held!r}, but the verdict needs the training loss" if held else ""
    return LogError(f"{path}: the log has no 'loss' column (it has: {listing(names) or 'none'}){also}; "
                    f"a training loss is one of {', '.join(LOSS[:5])}, ..., or name it: --loss COLUMN")


def listing(names, most: int = 20) -> str:
    names = list(names)
    return ", ".join(_shown(n) for n in names[:most]) + (", ..." if len(names) > most else "")


def rename(columns: dict, found: dict) -> dict:
    """``columns`` under their History names: a log's own column of a role's name that is not
    the one chosen for it keeps its data under ``<name>_unused``."""
    out = {}
    taken = set(found.values())
    for name, col in columns.items():
        if name in found:
            out[found[name]] = col
        elif name in taken:
            out[f"{name}_unused"] = col
        elif name.lower() not in IGNORED:
            out[name] = col
    return out
