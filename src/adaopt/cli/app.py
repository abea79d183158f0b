"""The ``adaopt`` commands: thin wrappers that parse arguments and call the library."""

from __future__ import annotations

import sys
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


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        _fail(f"{what}={text!r}: expected a number or comma-separated numbers")


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
    rows: Annotated[int, typer.Option(help="rows to show (first and last half); 0 shows all")] = 20,
) -> None:
    """Run OPTIMIZER on a function of x (or x and y) and print every step: the lesson's tables.

    Example: adaopt trace adagrad --f "10*x**2" --x0 5 --lr 0.5 --eps 0 --steps 3 --conventions lesson
    """
    from ..expr import parse

    try:
        cls = get(optimizer)
        hyper.check_choice("conventions", conventions, hyper.PRESETS)
        objective = parse(f)
    except (ValueError, ImportError) as exc:
        _fail(str(exc))
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
    tr = minimize(objective, x_start, opt, steps)
    variables = ", ".join(objective.variables)
    typer.echo(f"{opt!r}\nminimizing f({variables}) = {f} from {variables} = {x0}\n")
    typer.echo(tr.table(max_rows=rows))
    if steps:
        from ..trace import _fmt

        typer.echo(f"\nafter {steps} step(s): x = {_fmt(tr.x[-1])}, f = {_fmt(tr.f[-1])}, "
                   f"lr_eff = {_fmt(tr.eff_lr[-1])}")


if __name__ == "__main__":  # pragma: no cover
    app()
    sys.exit(0)
