"""The diagnostics and lab commands: output, exit codes, --help (typer's CliRunner)."""

import json

import numpy as np
import pytest

pytest.importorskip("typer")
pytest.importorskip("sklearn")

from typer.testing import CliRunner  # noqa: E402

from adaopt.cli.app import app  # noqa: E402

runner = CliRunner()


def _log(tmp_path, losses, name="run.csv"):
    path = tmp_path / name
    path.write_text("step,loss\n" + "".join(f"{i + 1},{float(v)!r}\n" for i, v in enumerate(losses)))
    return path


@pytest.mark.parametrize("command", ["diagnose", "lr-find", "lab", "compare", "list"])
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_diagnose_a_converging_log_exits_0(tmp_path):
    rng = np.random.default_rng(0)
    losses = 2.0 * np.exp(-np.arange(300) / 100) * (1 + 0.02 * rng.standard_normal(300))
    result = runner.invoke(app, ["diagnose", str(_log(tmp_path, losses))])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("CONVERGING")


def test_diagnose_a_diverging_log_exits_1_with_advice(tmp_path):
    losses = 1.0 * 1.05 ** np.arange(100)
    result = runner.invoke(app, ["diagnose", str(_log(tmp_path, losses)), "--lr", "0.5"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("DIVERGING")
    assert "lr = 0.5 -> 0.05" in result.output


def test_diagnose_json(tmp_path):
    losses = 1.0 * 1.05 ** np.arange(100)
    result = runner.invoke(app, ["diagnose", str(_log(tmp_path, losses)), "--json"])
    found = json.loads(result.output)
    assert found["verdict"] == "DIVERGING" and found["code"] == "lr_too_high"


def test_diagnose_a_malformed_log_exits_2_naming_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("step,loss\n1,0.5\n2,oops\n")
    result = runner.invoke(app, ["diagnose", str(path)])
    assert result.exit_code == 2
    assert "line 3" in result.output and "'loss'" in result.output


def test_diagnose_a_missing_file_exits_2(tmp_path):
    result = runner.invoke(app, ["diagnose", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_lr_find_suggests_an_lr_and_writes_a_plot(tmp_path):
    png = tmp_path / "lr.png"
    result = runner.invoke(app, ["lr-find", "rosenbrock", "--optimizer", "adam", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "suggested lr:" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_find_unknown_problem_exits_2():
    result = runner.invoke(app, ["lr-find", "nope"])
    assert result.exit_code == 2
    assert "nope" in result.output


def test_list_names_optimizers_problems_and_presets():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("adagrad", "momentum", "digits_mlp", "breast_cancer", "lesson"):
        assert name in result.output


def test_lab_unknown_names_exit_2():
    result = runner.invoke(app, ["lab", "--problems", "quadratic,nope"])
    assert result.exit_code == 2 and "'nope'" in result.output
    result = runner.invoke(app, ["lab", "--optimizers", "adamax"])
    assert result.exit_code == 2 and "'adamax'" in result.output


def test_compare_prints_a_table_and_writes_a_report(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "rep"
    result = runner.invoke(app, ["compare", "rosenbrock", "--optimizers", "sgd,adam", "--steps", "100",
                                 "--seeds", "2", "--lrs", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rosenbrock" in result.output and "adam" in result.output
    assert "16 runs" in result.output  # 2 optimizers x 4 lrs x 2 seeds
    assert (out / "report.html").is_file()
