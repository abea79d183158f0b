"""The ``adaopt`` commands: thin wrappers that parse arguments and call the library."""

from __future__ import annotations

import math
import sys
from typing import Annotated, Optional

import typer

from .. import hyper, registry
from ..optim import get
from ..trace import minimize
from .checks import PLOT_FORMATS, check_log, check_out_dir, check_plot, count, fail, floats, names_in, short

#: The optimizers ``trace`` and ``diagnose --optimizer`` name, and the lab's (with variants).
FAMILIES = tuple(registry.FAMILIES)
LAB_OPTIMIZERS = tuple(registry.VARIANTS)

# plain help (click's): rich's tables cut long flag names in an 80-column terminal ("--bias-correcti…")
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"max_content_width": 120},  # the terminal's width, up to 120
                  help="Adaptive-learning-rate optimizers: " + ", ".join(f.name for f in registry.FAMILIES.values()) + ".")


@app.callback()
def _root() -> None:
    """Adaptive-learning-rate optimizers, exact to the lesson and to torch.optim."""


#: The most steps ``adaopt trace`` records (every step is kept, and a table is printed).
MAX_TRACE_STEPS = 100_000


@app.command()
def trace(
    optimizer: Annotated[str, typer.Argument(help=f"one of: {', '.join(FAMILIES)}")],
    f: Annotated[str, typer.Option("--f", help="the objective in x (or x and y), e.g. '10*x**2'")],
    x0: Annotated[str, typer.Option("--x0", help="starting point: '5' or '1,-1'")],
    steps: Annotated[int, typer.Option(callback=count(0, MAX_TRACE_STEPS),
                                       help=f"number of steps, 0 to {MAX_TRACE_STEPS}")] = 10,
    lr: Annotated[Optional[float], typer.Option(help="learning rate")] = None,
    eps: Annotated[Optional[float], typer.Option(help="epsilon")] = None,
    conventions: Annotated[str, typer.Option(help="torch, optax or lesson")] = "torch",
    momentum: Annotated[Optional[float], typer.Option(help="SGD / RMSprop momentum")] = None,
    dampening: Annotated[Optional[float], typer.Option(help="SGD dampening")] = None,
    nesterov: Annotated[Optional[bool], typer.Option("--nesterov/--no-nesterov", help="SGD Nesterov")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="RMSprop decay")] = None,
    rho: Annotated[Optional[float], typer.Option(help="Adadelta decay; RMSprop's alpha (the lesson's rho)")] = None,
    centered: Annotated[Optional[bool], typer.Option("--centered/--no-centered")] = None,
    beta1: Annotated[Optional[float], typer.Option(help="Adam-family beta1")] = None,
    beta2: Annotated[Optional[float], typer.Option(help="Adam-family beta2")] = None,
    amsgrad: Annotated[Optional[bool], typer.Option("--amsgrad/--no-amsgrad")] = None,
    bias_correction: Annotated[Optional[bool], typer.Option("--bias-correction/--no-bias-correction")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="weight decay")] = None,
    lr_decay: Annotated[Optional[float], typer.Option(help="AdaGrad lr_decay")] = None,
    initial_accumulator: Annotated[Optional[float], typer.Option(help="AdaGrad initial accumulator")] = None,
    eps_in_sqrt: Annotated[Optional[bool], typer.Option("--eps-in-sqrt/--eps-outside-sqrt")] = None,
    hp: Annotated[Optional[list[str]], typer.Option(
        "--hp", help="any other hyperparameter, NAME=VALUE (repeatable): --hp momentum_decay=0.01")] = None,
    rows: Annotated[int, typer.Option(help="rows to show, at least 2 (first and last half); 0 shows all")] = 20,
) -> None:
    """Run OPTIMIZER on a function of x (or x and y) and print every step: the lesson's tables.

    Example: adaopt trace adagrad --f "10*x**2" --x0 5 --lr 0.5 --eps 0 --steps 3 --conventions lesson
    """
    if rows < 0 or rows == 1:
        fail(f"--rows={rows}: allowed 0 (all rows) or an integer >= 2")
    given = dict(lr=lr, eps=eps, momentum=momentum, dampening=dampening, nesterov=nesterov, alpha=alpha,
                 centered=centered, amsgrad=amsgrad, bias_correction=bias_correction,
                 weight_decay=weight_decay, lr_decay=lr_decay,
                 initial_accumulator_value=initial_accumulator, eps_in_sqrt=eps_in_sqrt)
    opt = _trace_optimizer(optimizer, conventions, given, rho, (beta1, beta2), hp or [])
    objective, start = _trace_objective(f, x0)
    tr = _run_trace(objective, start, opt, steps, f"--f={short(f)}", x0)
    variables = ", ".join(objective.variables)
    typer.echo(f"{opt!r}\nminimizing f({variables}) = {f} from {variables} = {x0}\n")
    typer.echo(tr.table(max_rows=rows))
    from ..trace import _fmt

    if steps:
        typer.echo(f"\nafter {steps} step(s): x = {_fmt(tr.x[-1])}, f = {_fmt(tr.f[-1])}, "
                   f"lr_eff = {_fmt(tr.eff_lr[-1])}")
        _say_if_it_blew_up(tr)
    else:
        typer.echo(f"\n0 steps: x = {_fmt(tr.x[0])}, f = {_fmt(tr.f[0])}")


def _hp_value(text: str):
    """A --hp value: true/false, a number, numbers split by commas (betas=0.5,0.9, with or without
    brackets) as a tuple, else the text (a choice: wd_form=add), which the optimizer checks."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return float(text)
    except ValueError:
        pass
    inner = text.strip().strip("()[]")
    if "," in inner:
        try:
            return tuple(float(part) for part in inner.split(","))
        except ValueError:
            pass
    return text.strip()


def _trace_optimizer(name: str, conventions: str, given: dict, rho, betas, extra: list[str]):
    """The optimizer ``trace`` runs, from the options given (None: the preset's default)."""
    try:
        cls = get(name)
        hyper.check_choice("conventions", conventions, hyper.PRESETS)
    except ValueError as exc:
        fail(str(exc))
    defaults = cls.entry.defaults_for(conventions)
    if rho is not None:  # Adadelta's rho; in the lesson, RMSprop's decay is called rho too
        given["rho" if "rho" in defaults or "alpha" not in defaults else "alpha"] = rho
    if betas != (None, None):
        b1, b2 = defaults.get("betas", (None, None))
        given["betas"] = (b1 if betas[0] is None else betas[0], b2 if betas[1] is None else betas[1])
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--hp={short(item)}: give NAME=VALUE, e.g. --hp momentum_decay=0.01")
        given[key.strip()] = _hp_value(value)
    try:
        return cls(conventions=conventions, **{k: v for k, v in given.items() if v is not None})
    except TypeError as exc:
        fail(f"{cls.__name__} does not take that option ({exc})")
    except ValueError as exc:
        fail(str(exc))


def _trace_objective(f: str, x0: str):
    """The parsed objective and the start point, refused cleanly when they cannot be used."""
    from ..expr import parse

    try:
        objective = parse(f)
    except ImportError as exc:
        fail(str(exc))
    except ValueError as exc:  # a syntax error, a limit (length, depth), a number out of float range
        fail(f"--f={short(f)}: {exc}")
    start = floats(x0, "--x0")
    if len(start) != len(objective.variables):
        fail(f"--x0 has {len(start)} value(s), the function has variables {', '.join(objective.variables)}")
    return objective, start[0] if len(start) == 1 else start


def _say_if_it_blew_up(tr) -> None:
    """A note under a table whose run left the floating-point range: the step, and what to change."""
    import numpy as np

    bad = [t for t in range(1, len(tr.f)) if not (np.isfinite(tr.f[t]) and np.all(np.isfinite(tr.x[t])))]
    if bad:
        typer.echo(f"the run diverged: f or x is inf or nan from step {bad[0]} on (the steps were too large for "
                   "this function: try a smaller --lr)")


def _run_trace(objective, start, opt, steps: int, given_f: str, x0: str):
    import numpy as np

    variables = ", ".join(objective.variables)
    try:
        with np.errstate(all="ignore"):
            value, grad = objective(start)
        why = "" if np.isfinite(value) and np.all(np.isfinite(grad)) else ": it is nan or inf there"
    except ValueError as exc:  # a part of it that is no real number, such as 1/0 or log(-1)
        why = f": {exc}"
    if why:
        fail(f"{given_f}: the function has no real, finite value and derivative at {variables} = {x0}{why}")
    try:
        with np.errstate(all="ignore"):  # a run that overflows is told after the table, not by NumPy
            return minimize(objective, start, opt, steps)
    except ValueError as exc:
        fail(f"{given_f}: {exc}")


#: What ``adaopt diagnose`` reads (its --help lists them).
LOG_FORMATS = ("CSV/TSV/JSON Lines (mon.save, any script's); Lightning CSVLogger metrics.csv and its "
               "lightning_logs/version_N folders (the newest is read); Hugging Face trainer_state.json; "
               "TensorBoard event files or run folders, and their CSV/JSON scalar exports; Keras CSVLogger; "
               "a Weights & Biases history CSV")


@app.command(help="\n\n".join((
    "Read a training log and say whether the run is diverging, oscillating, stalled, slow or converging.",
    f"Formats (found by content): {LOG_FORMATS}.",
    "Column names are matched in any case with the usual aliases (train_loss, training_loss, train/loss, "
    "loss_step, Value, ...); --loss, --step and --lr name others. An eval loss (eval_loss, val_loss) is its own "
    "evidence: a training loss falling while it rises is overfitting.",
    "Exit status: 0 when the run looks healthy or slow, 1 when it is DIVERGING, NONFINITE, STALLED or "
    "OSCILLATING, or overfitting, 2 when the log cannot be read, 3 when it is too short to judge (TOO_SHORT: "
    "fewer than 6 logged losses).")))
def diagnose(
    log: Annotated[str, typer.Argument(help="a log file or folder (see the formats above)")],
    target: Annotated[Optional[float], typer.Option(help="a loss to reach")] = None,
    budget: Annotated[Optional[int], typer.Option(callback=count(1), help="steps the run may take in all")] = None,
    floor: Annotated[Optional[float], typer.Option(help="the best attainable loss, if known")] = None,
    baseline: Annotated[Optional[float], typer.Option(
        help="the loss of knowing nothing (ln K for K-class cross-entropy, the target's variance for MSE): "
             "a run held there is named")] = None,
    optimizer: Annotated[Optional[str], typer.Option(
        help=f"the optimizer family that wrote the log: {', '.join(FAMILIES)} (momentum runs are sgd)")] = None,
    lr: Annotated[Optional[str], typer.Option(
        help="its learning rate (a number > 0, for concrete advice), or the log's column holding it")] = None,
    loss: Annotated[Optional[str], typer.Option(help="the column of the training loss (default: found by name)")] = None,
    step: Annotated[Optional[str], typer.Option(help="the column of the step (default: found by name)")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="print the diagnosis as JSON (a signal that is inf or NaN as null)")] = False,
    plot: Annotated[Optional[str], typer.Option(
        help="also draw the loss, the steps the verdict names, where check() fires and the lr, to this file: "
             f"{', '.join('.' + f for f in PLOT_FORMATS)} (no suffix: .png)")] = None,
) -> None:
    import warnings

    from .._io import strict_json
    from ..diagnostics import LogError, LogWarning
    from ..diagnostics import diagnose as run_diagnose
    from ..diagnostics import read_log

    lr_value, lr_column = _lr_option(lr)
    for name, value in (("--target", target), ("--floor", floor), ("--baseline", baseline)):
        if value is not None and not math.isfinite(value):
            fail(f"{name}={value!r}: allowed a finite number")
    if optimizer is not None:
        if optimizer.lower() not in FAMILIES:
            fail(f"--optimizer={optimizer!r}: unknown; choose from {', '.join(FAMILIES)} "
                  "(momentum and Nesterov runs are sgd)")
        optimizer = optimizer.lower()
    check_log(log)
    target_plot = check_plot(plot)
    meta = {k: v for k, v in {"optimizer": optimizer, "lr": lr_value}.items() if v is not None}
    try:
        with warnings.catch_warnings(record=True) as said:  # what the reader left out, said plainly
            warnings.simplefilter("always")
            history = read_log(log, loss=loss, step=step, lr=lr_column)
        for w in said:
            if issubclass(w.category, LogWarning):
                typer.echo(f"warning: {w.message}", err=True)
            else:  # another package's warning: as Python shows it
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        found = run_diagnose(history, target=target, budget=budget, floor=floor, baseline=baseline, meta=meta)
    except LogError as exc:
        fail(str(exc))
    except UnicodeDecodeError as exc:  # a ValueError: caught first, to name the file
        fail(f"{log}: not a text log (byte {exc.start + 1} is not UTF-8); give a CSV or JSON Lines file")
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{log}: cannot read it ({exc.strerror or exc})")
    except Exception:  # a bug of ours: its own exit code, never a verdict's (1 is "the run failed")
        import traceback

        traceback.print_exc()
        typer.echo("error: adaopt diagnose failed on this log (a bug: please report it with the log)", err=True)
        raise typer.Exit(4) from None
    source = history.read_from or {}
    if source.get("title") or source.get("note"):
        typer.echo(f"read {source['path']} as a {source.get('title') or source['format']}"
                   + (f" ({source['note']})" if source.get("note") else ""), err=True)
    typer.echo(strict_json(found.to_dict(), indent=2) if as_json else str(found))
    if target_plot:
        from ..diagnostics.plot import plot_diagnosis

        _write_plot(lambda: plot_diagnosis(history, found, floor=floor, baseline=baseline), target_plot, plot,
                    err=as_json)
    if found.verdict in ("DIVERGING", "NONFINITE", "STALLED", "OSCILLATING") or "overfitting" in found.signals:
        raise typer.Exit(1)
    if found.verdict == "TOO_SHORT":  # neither healthy (0) nor a failure (1): nothing to judge yet
        raise typer.Exit(3)


def _lr_option(lr: Optional[str]):
    """``--lr``: a number (the run's lr, for the advice) or a column's name: ``(value, column)``."""
    if lr is None:
        return None, None
    try:
        value = float(lr)
    except ValueError:
        return None, lr
    if not (math.isfinite(value) and value > 0):
        fail(f"--lr={value!r}: allowed a finite number > 0 (or the name of the log's lr column)")
    return value, None


@app.command("lr-find")
def lr_find_cmd(
    problem: Annotated[str, typer.Argument(help="a lab problem (adaopt list shows them)")],
    optimizer: Annotated[str, typer.Option(help=", ".join(LAB_OPTIMIZERS[:-1]) + " or " + LAB_OPTIMIZERS[-1])] = "adam",
    start: Annotated[float, typer.Option(help="first lr")] = 1e-7,
    end: Annotated[float, typer.Option(help="last lr")] = 10.0,
    steps: Annotated[int, typer.Option(callback=count(2), help="steps of the sweep")] = 100,
    plot: Annotated[Optional[str], typer.Option(
        help=f"write the plot to this file: {', '.join('.' + f for f in PLOT_FORMATS)} (no suffix: .png)")] = None,
) -> None:
    """The learning-rate range test on a lab problem: a suggested lr and, with --plot, a picture."""
    from ..diagnostics import lr_find

    target = check_plot(plot)
    try:
        found = lr_find(problem, optimizer, start=start, end=end, steps=steps)
    except (ValueError, ImportError) as exc:
        fail(str(exc))
    typer.echo(str(found))
    if target:
        _write_plot(found.plot, target, plot)


def _write_plot(draw, target: tuple, plot: str, err: bool = False) -> None:
    """``--plot``: draw (a call returning an Axes) and write its figure to ``target``, ``(path,
    format)`` from :func:`check_plot`, atomically; say where (on stderr with ``err``: beside
    ``--json``, stdout holds only the JSON)."""
    import io

    from .._io import atomic_write

    path, fmt = target
    try:
        figure = draw().figure
    except ImportError as exc:
        fail(str(exc))
    buf = io.BytesIO()
    figure.savefig(buf, format=fmt, dpi=100, bbox_inches="tight")
    try:
        atomic_write(path, buf.getvalue())
    except OSError as exc:
        fail(f"--plot={short(plot)}: cannot write {short(str(path))} ({exc.strerror or exc})")
    typer.echo(f"plot: {path}", err=err)


@app.command()
def lab(
    problems: Annotated[Optional[str], typer.Option(help="comma-separated problems (default: all)")] = None,
    optimizers: Annotated[Optional[str], typer.Option(help="comma-separated optimizers (default: the six)")] = None,
    steps: Annotated[Optional[int], typer.Option(
        callback=count(1), help="steps per run (default: each problem's own)")] = None,
    seeds: Annotated[int, typer.Option(callback=count(1), help="seeds per configuration")] = 3,
    lrs: Annotated[int, typer.Option(callback=count(2), help="learning rates on the grid, 1e-4 to 10")] = 16,
    out: Annotated[str, typer.Option(help="where the report goes")] = "lab-report",
) -> None:
    """Compare the optimizers on the built-in problems: tuned lrs, seeds, verdicts, plots, an HTML report."""
    _run_lab(problems, optimizers, steps, seeds, lrs, out, problems_given_as="--problems")


@app.command()
def compare(
    problem: Annotated[str, typer.Argument(
        metavar="PROBLEM", help="a lab problem, or several comma-separated (adaopt list shows them)")],
    optimizers: Annotated[Optional[str], typer.Option(help="comma-separated optimizers (default: the six)")] = None,
    steps: Annotated[Optional[int], typer.Option(callback=count(1), help="steps per run")] = None,
    seeds: Annotated[int, typer.Option(callback=count(1), help="seeds per configuration")] = 3,
    lrs: Annotated[int, typer.Option(callback=count(2), help="learning rates on the grid")] = 16,
    out: Annotated[Optional[str], typer.Option(help="also write an HTML report here")] = None,
) -> None:
    """Compare optimizers on one problem, or several comma-separated: the lab, narrowed to PROBLEM."""
    _run_lab(problem, optimizers, steps, seeds, lrs, out, problems_given_as="PROBLEM")


def _run_lab(problems, optimizers, steps, seeds, lrs, out, problems_given_as) -> None:
    import numpy as np

    from ..lab.problems import PROBLEMS
    from ..lab.run import run_lab
    from ..lab.sweep import DEFAULT_OPTIMIZERS

    chosen_problems = names_in(problems, list(PROBLEMS), problems_given_as)
    chosen_optimizers = names_in(optimizers, list(LAB_OPTIMIZERS), "--optimizers") or list(DEFAULT_OPTIMIZERS)
    check_out_dir(out)
    grid = tuple(float(f"{v:.3g}") for v in np.logspace(-4, 1, lrs))
    try:
        from ..lab.report import summary_text, write_report
    except ImportError as exc:
        fail(f"the lab needs its extra: pip install 'adaopt[lab]' ({exc})")
    try:
        result = _with_progress(lambda progress: run_lab(chosen_problems, chosen_optimizers, lrs=grid,
                                                         seeds=tuple(range(seeds)), steps=steps,
                                                         progress=progress))
    except ImportError as exc:
        fail(str(exc))
    typer.echo(summary_text(result))
    typer.echo(f"\n{len(result.records())} runs in {result.seconds:.1f} s")
    if out:
        try:
            path = write_report(result, out)
        except ImportError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"--out={short(out)}: cannot write the report ({exc.strerror or exc})")
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


@app.command()
def explore(
    port: Annotated[int, typer.Option(help="the port on 127.0.0.1; 0 picks a free one")] = 0,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="print the address, open no browser")] = False,
) -> None:
    """The lesson as a page: optimizers' trajectories on contours, sliders, the worked examples. Ctrl-C stops it."""
    from ..explore import serve

    if not 0 <= port <= 65535:
        fail(f"--port={port}: allowed 0 (a free port) to 65535")
    try:
        serve(port, open_browser=not no_browser)
    except OSError as exc:
        fail(f"--port={port}: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})")


@app.command("list")
def list_cmd() -> None:
    """Show the optimizers, the lab's problems and the convention presets."""
    from ..lab.problems import PROBLEMS

    typer.echo("optimizers (adaopt trace):  " + ", ".join(FAMILIES))
    typer.echo("lab optimizers:")
    for name, v in registry.VARIANTS.items():
        opts = ", ".join(f"{k}={val}" for k, val in v.overrides.items())
        typer.echo(f"  {name:<10} {v.family}{' (' + opts + ')' if opts else ''}")
    typer.echo("problems:")
    for name, problem in PROBLEMS.items():
        typer.echo(f"  {name:<16} dim {problem.dim:<5} {problem.title}")
    typer.echo("convention presets:  " + ", ".join(hyper.PRESETS))


if __name__ == "__main__":  # pragma: no cover
    app()
    sys.exit(0)
