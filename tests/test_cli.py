import subprocess
import sys

import pytest

pytest.importorskip("typer")

from typer.testing import CliRunner  # noqa: E402

from adaopt.cli.app import app  # noqa: E402

runner = CliRunner()
EXAMPLE1 = ["trace", "adagrad", "--f", "10*x**2", "--x0", "5", "--lr", "0.5", "--eps", "0",
            "--steps", "3", "--conventions", "lesson"]


def _rows(output):
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("t "))
    return [line.split() for line in lines[start + 1:start + 4]]


def test_trace_prints_the_lessons_example1():
    result = runner.invoke(app, EXAMPLE1)
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    # columns: t, x[t-1], grad, G, lr_eff, x[t], f(x[t])
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert [float(r[3]) for r in rows] == pytest.approx([10000, 18100, 25040.6], rel=1e-5)
    xs = [float(r[5]) for r in rows]
    assert xs[0] == 4.5 and abs(xs[1] - 4.165) < 1e-3 and round(xs[2], 3) == 3.902
    assert round(float(rows[2][4]), 4) == 0.0032
    assert "after 3 step(s): x = 3.90228" in result.output


def test_trace_two_variables_and_long_runs_are_elided():
    result = runner.invoke(app, ["trace", "adam", "--f", "(1-x)**2 + 100*(y-x^2)^2", "--x0", "-1,1",
                                 "--lr", "0.01", "--steps", "50", "--rows", "4"])
    assert result.exit_code == 0, result.output
    assert "..." in result.output and "m_hat" in result.output


@pytest.mark.parametrize("args, message", [
    (["trace", "adamx", "--f", "x", "--x0", "1"], "unknown optimizer 'adamx'"),
    (["trace", "adam", "--f", "x**", "--x0", "1"], "found the end"),
    (["trace", "adam", "--f", "x", "--x0", "1", "--lr", "-1"], "lr=-1.0 is invalid"),
    (["trace", "adam", "--f", "x+y", "--x0", "1"], "--x0 has 1 value"),
    (["trace", "adam", "--f", "x", "--x0", "one"], "expected a number"),
    (["trace", "sgd", "--f", "x", "--x0", "1", "--beta1", "0.5"], "does not take"),
    (["trace", "adam", "--f", "x", "--x0", "1", "--conventions", "keras"], "conventions='keras'"),
])
def test_errors_exit_2_with_a_message(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "trace" in result.output
    result = runner.invoke(app, ["trace", "--help"])
    assert result.exit_code == 0 and "--conventions" in result.output


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "adaopt", *EXAMPLE1], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "3.90228" in out.stdout


@pytest.mark.parametrize("f, why", [
    ("1/0", "division by zero"),
    ("x/0", "division by zero"),
    ("log(-1)*x", "imaginary"),
    ("sqrt(x)", "nan or inf"),
])
def test_trace_a_function_without_a_real_value_exits_2(f, why, refused):
    x0 = "-1" if f == "sqrt(x)" else "1"
    result = runner.invoke(app, ["trace", "adam", "--f", f, "--x0", x0, "--steps", "2"])
    refused(result, f"--f={f!r}", f"no real, finite value and derivative at x = {x0}", why)


def test_trace_that_overflows_says_so_without_numpys_warning():
    """A trial: SGD at lr 1 on x**4 from 10 overflowed at step 4; NumPy's RuntimeWarning leaked out
    and the table ended in nan with no word of it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # leaked out, it would fail the command here
        result = runner.invoke(app, ["trace", "sgd", "--f", "x**4", "--x0", "10", "--lr", "1", "--steps", "6"])
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "the run diverged: f or x is inf or nan from step 4 on" in result.output and "--lr" in result.output
    calm = runner.invoke(app, ["trace", "sgd", "--f", "x**4", "--x0", "1", "--lr", "0.01", "--steps", "6"])
    assert "diverged" not in calm.output


@pytest.mark.parametrize("text", ["betas=0.5,0.9", "betas=(0.5, 0.9)", "betas=[0.5,0.9]"])
def test_trace_hp_takes_a_pair(text):
    """A trial: --hp betas=0.5,0.9 was refused ("allowed a pair"), whatever the spelling."""
    result = runner.invoke(app, ["trace", "adam", "--f", "x**2", "--x0", "1", "--steps", "2", "--hp", text])
    assert result.exit_code == 0 and "betas=(0.5, 0.9)" in result.output, result.output


def test_help_in_80_columns_shows_every_flag_whole():
    """A trial: rich's help table cut flags to "--bias-correcti…" in an 80-column terminal."""
    result = runner.invoke(app, ["trace", "--help"], terminal_width=80)
    assert result.exit_code == 0 and "…" not in result.output
    for flag in ("--bias-correction / --no-bias-correction", "--initial-accumulator", "--eps-in-sqrt / --eps-outside-sqrt"):
        assert flag in result.output, result.output


TRACE = ["trace", "adam", "--f", "x**2", "--x0", "1"]


@pytest.mark.parametrize("args, said", [
    (TRACE + ["--steps", "-1"], "'--steps': -1 is out of range: allowed 0 to 100000"),
    (TRACE + ["--steps", "100001"], "100001 is out of range: allowed 0 to 100000"),
    (["lab", "--seeds", "0"], "'--seeds': 0 is out of range: allowed 1 or more"),
    (["lr-find", "quadratic", "--steps", "1"], "'--steps': 1 is out of range: allowed 2 or more"),
])
def test_a_count_out_of_range_is_refused_with_the_value_and_the_range(args, said):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert said in " ".join(result.output.split()), result.output


def test_trace_zero_steps_prints_the_header_and_the_start():
    result = runner.invoke(app, ["trace", "adam", "--f", "x**2", "--x0", "3", "--steps", "0"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "f(x[t])" in result.output and "0 steps: x = 3, f = 9" in result.output


@pytest.mark.parametrize("rows, shown", [(3, ["1", "2", "...", "6"]), (4, ["1", "2", "...", "5", "6"]),
                                         (2, ["1", "...", "6"]), (0, ["1", "2", "3", "4", "5", "6"]),
                                         (6, ["1", "2", "3", "4", "5", "6"])])
def test_trace_rows_shows_exactly_that_many(rows, shown):
    result = runner.invoke(app, ["trace", "sgd", "--f", "x**2", "--x0", "1", "--lr", "0.1", "--steps", "6",
                                 "--rows", str(rows)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("t "))
    table = lines[header + 1:lines.index("", header)]
    assert [line.split()[0] for line in table] == shown


@pytest.mark.parametrize("rows", ["-1", "1"])
def test_trace_rows_below_2_are_refused(rows, refused):
    result = runner.invoke(app, ["trace", "sgd", "--f", "x**2", "--x0", "1", "--steps", "3", "--rows", rows])
    refused(result, f"--rows={rows}", "0 (all rows) or an integer >= 2")


@pytest.mark.parametrize("x0", ["nan", "1e400", "-inf", "1,nan"])
def test_trace_non_finite_x0_is_refused(x0, refused):
    f = "x**2 + y**2" if "," in x0 else "x**2"
    result = runner.invoke(app, ["trace", "adam", "--f", f, "--x0", x0, "--steps", "2"])
    refused(result, f"--x0={x0!r}", "finite")


# The inputs that hung (an earlier version's sympy, in exact arithmetic in C, where no signal
# reaches) run in a child process: a regression fails after _HUNG seconds instead of stalling.
_HUNG = 30
_CHILD = r"""
import json, sys, time
from typer.testing import CliRunner
from adaopt.cli.app import app
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
r = CliRunner().invoke(app, args)
exc = r.exception
print(json.dumps({"exit_code": r.exit_code, "output": r.output, "seconds": time.perf_counter() - t0,
                  "exception": None if exc is None or isinstance(exc, SystemExit) else repr(exc)}))
"""


def _invoke_bounded(args):
    """``runner.invoke(app, args)`` in a child process; a result the ``refused`` fixture takes."""
    import json
    from types import SimpleNamespace

    try:
        run = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True,
                             timeout=_HUNG)
    except subprocess.TimeoutExpired:
        pytest.fail(f"adaopt {' '.join(args)[:80]} still running after {_HUNG} s")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["seconds"] < 5, out  # the bug was a hang of minutes
    return SimpleNamespace(exit_code=out["exit_code"], output=out["output"],
                           exception=None if out["exception"] is None else RuntimeError(out["exception"]))


@pytest.mark.parametrize("f", ["2**-10**10 + x", "(1/2)**10**10 * x + x**2", "(2/3)**(10**9) + x**2"])
def test_trace_numeric_powers_that_hung_run_in_floats(f):
    result = _invoke_bounded(["trace", "sgd", "--f", f, "--x0", "1", "--lr", "0.1", "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "after 2 step(s)" in result.output


@pytest.mark.parametrize("f, message", [
    ("pi^exp(45837.7)*x", "'exp(45837.7)' is beyond the range of a float"),
    ("(2*x)**10**10", "no real, finite value and derivative at x = 1: it is nan or inf there"),
    (" + ".join(f"x**{k}" for k in range(1, 3001)), "characters long; at most 2000 are allowed"),
    ("+".join(f"x**{k}" for k in range(1, 201)), "799 numbers, names, operators and parentheses; at most 500"),
])
def test_trace_refuses_at_once_what_hung(f, message, refused):
    result = _invoke_bounded(["trace", "adam", "--f", f, "--x0", "1", "--steps", "2"])
    refused(result, "--f=", message)
    assert len(result.output.splitlines()) == 1 and len(result.output) < 400


@pytest.mark.parametrize("f", ["(" * 150 + "x" + ")" * 150, "-" * 150 + "x", "sin(" * 150 + "x" + ")" * 150,
                               "**".join(["x"] * 151)])
def test_trace_deep_nesting_is_refused_not_a_recursion_error(f, refused):
    result = runner.invoke(app, ["trace", "adam", "--f", f, "--x0", "1", "--steps", "2"])
    refused(result, "--f=", "nested more than 100 levels deep")
    assert "RecursionError" not in result.output and len(result.output.splitlines()) == 1


@pytest.mark.parametrize("f, message", [("1" * 10_000, "at most 2000"), ("1" * 150 + "*x", "more than 100 digits"),
                                        ("1e400*x", "1e400 is beyond the range of a float")])
def test_trace_a_literal_too_long_or_too_large_is_refused(f, message, refused):
    result = runner.invoke(app, ["trace", "adam", "--f", f, "--x0", "1", "--steps", "2"])
    refused(result, "--f=", message)
    assert "TypeError" not in result.output and len(result.output.splitlines()) == 1


@pytest.mark.parametrize("name", ["adadelta", "adamax", "nadam", "radam"])
def test_trace_runs_every_registered_optimizer(name):
    result = runner.invoke(app, ["trace", name, "--f", "x**2 + 3*y**2", "--x0", "1,-1", "--steps", "5", "--lr", "0.1"])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") > 8


def test_trace_rho_and_other_hyperparameters_by_name():
    result = runner.invoke(app, ["trace", "adadelta", "--f", "x**2", "--x0", "1", "--rho", "0.5", "--steps", "2"])
    assert result.exit_code == 0 and "rho=0.5" in result.output, result.output
    result = runner.invoke(app, ["trace", "rmsprop", "--f", "x**2", "--x0", "1", "--rho", "0.5", "--steps", "2"])
    assert result.exit_code == 0 and "alpha=0.5" in result.output, result.output  # the lesson's rho
    result = runner.invoke(app, ["trace", "nadam", "--f", "x**2", "--x0", "1", "--hp", "momentum_decay=0.01",
                                 "--hp", "decoupled_weight_decay=true", "--weight-decay", "0.1", "--steps", "2"])
    assert result.exit_code == 0 and "momentum_decay=0.01" in result.output, result.output


def test_trace_hp_is_refused_cleanly(refused):
    refused(runner.invoke(app, ["trace", "adam", "--f", "x**2", "--x0", "1", "--hp", "momentum_decay"]), "--hp")
    refused(runner.invoke(app, ["trace", "adam", "--f", "x**2", "--x0", "1", "--hp", "nope=1"]), "nope")


def test_trace_steps_are_bounded():
    """Every step of a trace is kept in memory: a mistyped --steps 10**9 is refused, not run out of memory."""
    from adaopt.cli.app import MAX_TRACE_STEPS

    result = runner.invoke(app, ["trace", "sgd", "--f", "x**2", "--x0", "1", "--steps", str(MAX_TRACE_STEPS + 1)])
    assert result.exit_code == 2
    assert "--steps" in result.output and str(MAX_TRACE_STEPS) in result.output
