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
