"""The ``adaopt`` commands: thin wrappers that parse arguments and call the library."""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import hyper
from ..optim import REGISTRY, get
from ..trace import minimize

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Adaptive-learning-rate optimizers: SGD, momentum, AdaGrad, RMSprop, Adam, AdamW.")


@app.callback()
def _root() -> None:
    """Adaptive-learning-rate optimizers, exact to the lesson and to torch.optim."""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _short(text: str, width: int = 60) -> str:
    """``repr(text)`` for a one-line message, shortened when ``text`` is long."""
    return repr(text) if len(text) <= width else repr(text[:width - 20]) + f"... ({len(text)} characters)"


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        _fail(f"{what}={text!r}: expected a number or comma-separated numbers")
    if not all(math.isfinite(v) for v in values):
        _fail(f"{what}={text!r}: allowed finite numbers only (not nan, inf or out of float range)")
    return values


#: The formats ``lr-find --plot`` writes, by file suffix.
PLOT_FORMATS = ("png", "pdf", "svg")
#: The lab's optimizer names (adaopt.lab.sweep.OPTIMIZERS; a test keeps the two in step).
LAB_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adam-nobc", "adamw", "adadelta",
                  "adamax", "nadam", "radam")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long, a loop of links: it cannot be there
        return False


def _name_problem(path: Path) -> Optional[str]:
    """Why the file system will not take ``path`` as a name (a part of it, or the whole,
    longer than it allows), or None; asked of the nearest folder that exists."""
    anchor = path.absolute()
    while not _exists(anchor) and anchor != anchor.parent:
        anchor = anchor.parent
    try:
        name_max, path_max = os.pathconf(anchor, "PC_NAME_MAX"), os.pathconf(anchor, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no answer: the common limits
        name_max, path_max = 255, 4096
    for part in path.parts:
        size = len(os.fsencode(part))
        if name_max and name_max > 0 and size > name_max:
            shown = repr(part) if len(part) <= 40 else repr(part[:20]) + "..."
            return f"the name {shown} is {size} bytes long; the file system allows {name_max}"
    size = len(os.fsencode(str(path)))
    if path_max and path_max > 0 and size >= path_max:
        return f"the path is {size} bytes long; the file system allows {path_max - 1}"
    return None


def _require_writable(given: str, folder: Path) -> None:
    """Fail naming ``given`` (``--out='x'``) unless a file can be created in ``folder``:
    tried, not guessed. The trial file's name is short, whatever the folder's."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".adaopt-check-")
    except OSError as exc:
        _fail(f"{given}: cannot write in {_short(str(folder))} ({exc.strerror or exc})")
    os.close(fd)
    os.unlink(name)


def _check_out_dir(out: Optional[str]) -> None:
    """Fail before any work unless the report folder ``out`` exists and is writable, or can be made."""
    if out is None:
        return
    given = f"--out={_short(out)}"
    if not out.strip():
        _fail(f"{given}: give a folder for the report (it is created if needed)")
    path = Path(out)
    problem = _name_problem(path)
    if problem:
        _fail(f"{given}: cannot make the folder: {problem}")
    try:
        if path.exists() and not path.is_dir():
            _fail(f"{given} is a file: give a folder for the report (it is created if needed)")
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            _fail(f"{given}: cannot create the folder, {_short(str(existing))} is a file")
    except OSError as exc:
        _fail(f"{given}: cannot use it ({exc.strerror or exc})")
    _require_writable(given, existing)


def _check_plot(plot: Optional[str]) -> Optional[tuple[Path, str]]:
    """The file and format ``lr-find --plot`` will write; fails before any work when it cannot."""
    if plot is None:
        return None
    given = f"--plot={_short(plot)}"
    allowed = ", ".join("." + f for f in PLOT_FORMATS)
    if not plot.strip():
        _fail(f"{given}: give a file name ending in {allowed}")
    path = Path(plot)
    fmt = path.suffix[1:].lower()
    if not fmt:  # no suffix: a PNG, and the name says so
        path, fmt = path.with_name(path.name + ".png"), "png"
    elif fmt not in PLOT_FORMATS:
        _fail(f"{given}: unsupported format {_short(path.suffix, 20)}; allowed: {allowed}")
    problem = _name_problem(path)
    if problem:
        _fail(f"{given}: cannot write the plot: {problem}")
    folder = path.parent
    try:
        if path.is_dir():
            _fail(f"{given} is a folder: give a file name ending in {allowed}")
        if not folder.is_dir():
            _fail(f"{given}: the folder {_short(str(folder))} does not exist")
    except OSError as exc:
        _fail(f"{given}: cannot use it ({exc.strerror or exc})")
    _require_writable(given, folder)
    return path, fmt


def _check_log(log: str) -> None:
    """Fail naming ``log`` when it cannot be a log: a name too long, a folder, binary data.
    What is wrong inside a text log, read_log says."""
    path = Path(log)
    problem = _name_problem(path)
    if problem:
        _fail(f"{_short(log)}: cannot read it: {problem}")
    try:
        if path.is_dir():
            _fail(f"{log}: is a directory, not a log file")
        if not path.is_file():
            return  # missing, a device, a pipe: read_log says so (and a pipe is not read here)
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        _fail(f"{log}: cannot read it ({exc.strerror or exc})")
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: read_log names it
        _fail(f"{log}: not a text log (byte {head.index(0) + 1} is a NUL byte; a log is UTF-8 text); "
              "give a CSV or JSON Lines file")


@app.command()
def trace(
    optimizer: Annotated[str, typer.Argument(help=f"one of: {', '.join(REGISTRY)}")],
    f: Annotated[str, typer.Option("--f", help="the objective in x (or x and y), e.g. '10*x**2'")],
    x0: Annotated[str, typer.Option("--x0", help="starting point: '5' or '1,-1'")],
    steps: Annotated[int, typer.Option(min=0, help="number of steps")] = 10,
    lr: Annotated[Optional[float], typer.Option(help="learning rate")] = None,
    eps: Annotated[Optional[float], typer.Option(help="epsilon")] = None,
    conventions: Annotated[str, typer.Option(help="torch, optax or lesson")] = "torch",
    momentum: Annotated[Optional[float], typer.Option(help="SGD / RMSprop momentum")] = None,
    dampening: Annotated[Optional[float], typer.Option(help="SGD dampening")] = None,
    nesterov: Annotated[Optional[bool], typer.Option("--nesterov/--no-nesterov", help="SGD Nesterov")] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", "--rho", help="RMSprop decay (the lesson's rho)")] = None,
    centered: Annotated[Optional[bool], typer.Option("--centered/--no-centered")] = None,
    beta1: Annotated[Optional[float], typer.Option(help="Adam beta1")] = None,
    beta2: Annotated[Optional[float], typer.Option(help="Adam beta2")] = None,
    amsgrad: Annotated[Optional[bool], typer.Option("--amsgrad/--no-amsgrad")] = None,
    bias_correction: Annotated[Optional[bool], typer.Option("--bias-correction/--no-bias-correction")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="weight decay")] = None,
    lr_decay: Annotated[Optional[float], typer.Option(help="AdaGrad lr_decay")] = None,
    initial_accumulator: Annotated[Optional[float], typer.Option(help="AdaGrad initial accumulator")] = None,
    eps_in_sqrt: Annotated[Optional[bool], typer.Option("--eps-in-sqrt/--eps-outside-sqrt")] = None,
    rows: Annotated[int, typer.Option(help="rows to show, at least 2 (first and last half); 0 shows all")] = 20,
) -> None:
    """Run OPTIMIZER on a function of x (or x and y) and print every step: the lesson's tables.

    Example: adaopt trace adagrad --f "10*x**2" --x0 5 --lr 0.5 --eps 0 --steps 3 --conventions lesson
    """
    import numpy as np

    from ..expr import parse

    if rows < 0 or rows == 1:
        _fail(f"--rows={rows}: allowed 0 (all rows) or an integer >= 2")
    try:
        cls = get(optimizer)
        hyper.check_choice("conventions", conventions, hyper.PRESETS)
    except ValueError as exc:
        _fail(str(exc))
    given_f = f"--f={_short(f)}"
    try:
        objective = parse(f)
    except ImportError as exc:
        _fail(str(exc))
    except ValueError as exc:  # a syntax error, a limit (length, depth), a number out of float range
        _fail(f"{given_f}: {exc}")
    start = _floats(x0, "--x0")
    if len(start) != len(objective.variables):
        _fail(f"--x0 has {len(start)} value(s), the function has variables {', '.join(objective.variables)}")
    given = dict(lr=lr, eps=eps, momentum=momentum, dampening=dampening, nesterov=nesterov, alpha=alpha,
                 centered=centered, amsgrad=amsgrad, bias_correction=bias_correction,
                 weight_decay=weight_decay, lr_decay=lr_decay,
                 initial_accumulator_value=initial_accumulator, eps_in_sqrt=eps_in_sqrt)
    if beta1 is not None or beta2 is not None:
        b1, b2 = hyper.defaults(cls.family, conventions)["betas"] if "betas" in hyper.defaults(
            cls.family, conventions) else (None, None)
        given["betas"] = (b1 if beta1 is None else beta1, b2 if beta2 is None else beta2)
    given = {k: v for k, v in given.items() if v is not None}
    try:
        opt = cls(conventions=conventions, **given)
    except TypeError as exc:
        _fail(f"{cls.__name__} does not take that option ({exc})")
    except ValueError as exc:
        _fail(str(exc))
    x_start = start[0] if len(start) == 1 else start
    variables = ", ".join(objective.variables)
    try:
        with np.errstate(all="ignore"):
            value, grad = objective(x_start)
        why = "" if np.isfinite(value) and np.all(np.isfinite(grad)) else ": it is nan or inf there"
    except ValueError as exc:  # a part of it that is no real number, such as 1/0 or log(-1)
        why = f": {exc}"
    if why:
        _fail(f"{given_f}: the function has no real, finite value and derivative at {variables} = {x0}{why}")
    try:
        tr = minimize(objective, x_start, opt, steps)
    except ValueError as exc:
        _fail(f"{given_f}: {exc}")
    typer.echo(f"{opt!r}\nminimizing f({variables}) = {f} from {variables} = {x0}\n")
    typer.echo(tr.table(max_rows=rows))
    from ..trace import _fmt

    if steps:
        typer.echo(f"\nafter {steps} step(s): x = {_fmt(tr.x[-1])}, f = {_fmt(tr.f[-1])}, "
                   f"lr_eff = {_fmt(tr.eff_lr[-1])}")
    else:
        typer.echo(f"\n0 steps: x = {_fmt(tr.x[0])}, f = {_fmt(tr.f[0])}")


@app.command()
def diagnose(
    log: Annotated[str, typer.Argument(help="a CSV or JSON Lines log with at least step and loss columns")],
    target: Annotated[Optional[float], typer.Option(help="a loss to reach")] = None,
    budget: Annotated[Optional[int], typer.Option(min=1, help="steps the run may take in all")] = None,
    floor: Annotated[Optional[float], typer.Option(help="the best attainable loss, if known")] = None,
    optimizer: Annotated[Optional[str], typer.Option(
        help=f"the optimizer family that wrote the log: {', '.join(REGISTRY)} (momentum runs are sgd)")] = None,
    lr: Annotated[Optional[float], typer.Option(help="its learning rate (> 0), for concrete advice")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the diagnosis as JSON")] = False,
) -> None:
    """Read a training log and say whether the run is diverging, oscillating, stalled, slow or converging.

    Exit status: 0 when the run looks healthy or slow, 1 when it is DIVERGING, NONFINITE,
    STALLED or OSCILLATING, 2 when the log cannot be read.
    """
    import json

    from ..diagnostics import LogError
    from ..diagnostics import diagnose as run_diagnose

    if lr is not None and not (math.isfinite(lr) and lr > 0):
        _fail(f"--lr={lr!r}: allowed a finite number > 0")
    for name, value in (("--target", target), ("--floor", floor)):
        if value is not None and not math.isfinite(value):
            _fail(f"{name}={value!r}: allowed a finite number")
    if optimizer is not None:
        if optimizer.lower() not in REGISTRY:
            _fail(f"--optimizer={optimizer!r}: unknown; choose from {', '.join(REGISTRY)} "
                  "(momentum and Nesterov runs are sgd)")
        optimizer = optimizer.lower()
    _check_log(log)
    meta = {k: v for k, v in {"optimizer": optimizer, "lr": lr}.items() if v is not None}
    try:
        found = run_diagnose(log, target=target, budget=budget, floor=floor, meta=meta)
    except LogError as exc:
        _fail(str(exc))
    except UnicodeDecodeError as exc:  # a ValueError: caught first, to name the file
        _fail(f"{log}: not a text log (byte {exc.start + 1} is not UTF-8); give a CSV or JSON Lines file")
    except ValueError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{log}: cannot read it ({exc.strerror or exc})")
    typer.echo(json.dumps(found.to_dict(), indent=2) if as_json else str(found))
    if found.verdict in ("DIVERGING", "NONFINITE", "STALLED", "OSCILLATING"):
        raise typer.Exit(1)


def _lab_names(text: Optional[str], known, what: str) -> Optional[list[str]]:
    """The comma-separated names in ``text``; ``what`` is how the user gave them (``--problems``, ``PROBLEM``)."""
    if text is None:
        return None
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        _fail(f"{what}: unknown {', '.join(map(repr, unknown)) or 'empty list'}; choose from {', '.join(known)}")
    return names


@app.command("lr-find")
def lr_find_cmd(
    problem: Annotated[str, typer.Argument(help="a lab problem (adaopt list shows them)")],
    optimizer: Annotated[str, typer.Option(help=", ".join(LAB_OPTIMIZERS[:-1]) + " or " + LAB_OPTIMIZERS[-1])] = "adam",
    start: Annotated[float, typer.Option(help="first lr")] = 1e-7,
    end: Annotated[float, typer.Option(help="last lr")] = 10.0,
    steps: Annotated[int, typer.Option(min=2, help="steps of the sweep")] = 100,
    plot: Annotated[Optional[str], typer.Option(
        help=f"write the plot to this file: {', '.join('.' + f for f in PLOT_FORMATS)} (no suffix: .png)")] = None,
) -> None:
    """The learning-rate range test on a lab problem: a suggested lr and, with --plot, a picture."""
    import io

    from ..diagnostics import lr_find

    target = _check_plot(plot)
    try:
        found = lr_find(problem, optimizer, start=start, end=end, steps=steps)
    except (ValueError, ImportError) as exc:
        _fail(str(exc))
    typer.echo(str(found))
    if target:
        path, fmt = target
        try:
            figure = found.plot().figure
        except ImportError as exc:
            _fail(str(exc))
        buf = io.BytesIO()
        figure.savefig(buf, format=fmt, dpi=100, bbox_inches="tight")
        from .._io import atomic_write

        try:
            atomic_write(path, buf.getvalue())
        except OSError as exc:
            _fail(f"--plot={_short(plot)}: cannot write {_short(str(path))} ({exc.strerror or exc})")
        typer.echo(f"plot: {path}")


@app.command()
def lab(
    problems: Annotated[Optional[str], typer.Option(help="comma-separated problems (default: all)")] = None,
    optimizers: Annotated[Optional[str], typer.Option(help="comma-separated optimizers (default: the six)")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="steps per run (default: each problem's own)")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="seeds per configuration")] = 3,
    lrs: Annotated[int, typer.Option(min=2, help="learning rates on the grid, 1e-4 to 10")] = 16,
    out: Annotated[str, typer.Option(help="where the report goes")] = "lab-report",
) -> None:
    """Compare the optimizers on the built-in problems: tuned lrs, seeds, verdicts, plots, an HTML report."""
    _run_lab(problems, optimizers, steps, seeds, lrs, out, problems_given_as="--problems")


@app.command()
def compare(
    problem: Annotated[str, typer.Argument(
        metavar="PROBLEM", help="a lab problem, or several comma-separated (adaopt list shows them)")],
    optimizers: Annotated[Optional[str], typer.Option(help="comma-separated optimizers (default: the six)")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="steps per run")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="seeds per configuration")] = 3,
    lrs: Annotated[int, typer.Option(min=2, help="learning rates on the grid")] = 16,
    out: Annotated[Optional[str], typer.Option(help="also write an HTML report here")] = None,
) -> None:
    """Compare optimizers on one problem, or several comma-separated: the lab, narrowed to PROBLEM."""
    _run_lab(problem, optimizers, steps, seeds, lrs, out, problems_given_as="PROBLEM")


def _run_lab(problems, optimizers, steps, seeds, lrs, out, problems_given_as) -> None:
    import numpy as np

    from ..lab.problems import PROBLEMS
    from ..lab.run import run_lab
    from ..lab.sweep import DEFAULT_OPTIMIZERS, OPTIMIZERS

    chosen_problems = _lab_names(problems, list(PROBLEMS), problems_given_as)
    chosen_optimizers = _lab_names(optimizers, list(OPTIMIZERS), "--optimizers") or list(DEFAULT_OPTIMIZERS)
    _check_out_dir(out)
    grid = tuple(float(f"{v:.3g}") for v in np.logspace(-4, 1, lrs))
    try:
        from ..lab.report import summary_text, write_report
    except ImportError as exc:
        _fail(f"the lab needs its extra: pip install 'adaopt[lab]' ({exc})")
    try:
        result = _with_progress(lambda progress: run_lab(chosen_problems, chosen_optimizers, lrs=grid,
                                                         seeds=tuple(range(seeds)), steps=steps,
                                                         progress=progress))
    except ImportError as exc:
        _fail(str(exc))
    typer.echo(summary_text(result))
    typer.echo(f"\n{len(result.records())} runs in {result.seconds:.1f} s")
    if out:
        try:
            path = write_report(result, out)
        except ImportError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"--out={_short(out)}: cannot write the report ({exc.strerror or exc})")
        typer.echo(f"report: {path}")


def _with_progress(work):
    """Run ``work(progress)`` with a rich progress bar on stderr (plain when rich is missing)."""
    try:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        return work(None)
    with Progress(TextColumn("{task.description:<32}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("sweeping", total=None)

        def progress(done, total, label):
            bar.update(task, completed=done, total=total, description=label)

        return work(progress)


@app.command("list")
def list_cmd() -> None:
    """Show the optimizers, the lab's problems and the convention presets."""
    from ..lab.problems import PROBLEMS
    from ..lab.sweep import OPTIMIZERS

    typer.echo("optimizers (adaopt trace):  " + ", ".join(REGISTRY))
    typer.echo("lab optimizers:")
    for name, (family, extra) in OPTIMIZERS.items():
        opts = ", ".join(f"{k}={v}" for k, v in extra.items())
        typer.echo(f"  {name:<10} {family}{' (' + opts + ')' if opts else ''}")
    typer.echo("problems:")
    for name, problem in PROBLEMS.items():
        typer.echo(f"  {name:<16} dim {problem.dim:<5} {problem.title}")
    typer.echo("convention presets:  " + ", ".join(hyper.PRESETS))


if __name__ == "__main__":  # pragma: no cover
    app()
    sys.exit(0)
