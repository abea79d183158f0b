import subprocess
import sys

import pytest

pytest.importorskip("typer")
pytest.importorskip("sympy")

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
