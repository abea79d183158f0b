"""The diagnostics and lab commands: output, exit codes, --help (typer's CliRunner)."""

import json
import os
from pathlib import Path

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


def _strict(name):
    raise ValueError(f"{name} is not JSON")


def test_diagnose_json_is_strict_json_when_a_signal_is_infinite(tmp_path):
    """A loss that stops dead has a rate collapse of inf; --json printed `Infinity`, which a
    browser's JSON.parse and jq refuse."""
    t = np.arange(1, 401)
    result = runner.invoke(app, ["diagnose", str(_log(tmp_path, np.where(t < 200, 2.0, 1.0))), "--json"])
    assert "Infinity" not in result.output and "NaN" not in result.output, result.output
    found = json.loads(result.output, parse_constant=_strict)
    assert "rate_collapse" in found["signals"] and found["signals"]["rate_collapse"] is None, found["signals"]


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
    result = runner.invoke(app, ["lab", "--optimizers", "lion"])
    assert result.exit_code == 2 and "'lion'" in result.output


@pytest.mark.parametrize("given, said", [("sgd,", "an empty name between commas"), ("sgd,sgd", "'sgd' given twice"),
                                         ("", "no names given; choose one or more")])
def test_lab_lists_with_a_gap_a_repeat_or_nothing_exit_2(given, said):
    """A trial: --optimizers sgd, and sgd,sgd passed silently; --problems '' said "unknown empty list"."""
    result = runner.invoke(app, ["compare", "quadratic", "--optimizers", given, "--seeds", "1", "--steps", "3"])
    assert result.exit_code == 2 and said in result.output, result.output


def test_compare_prints_a_table_and_writes_a_report(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "rep"
    result = runner.invoke(app, ["compare", "rosenbrock", "--optimizers", "sgd,adam", "--steps", "100",
                                 "--seeds", "2", "--lrs", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rosenbrock" in result.output and "adam" in result.output
    assert "16 runs" in result.output  # 2 optimizers x 4 lrs x 2 seeds
    assert (out / "report.html").is_file()


@pytest.fixture
def no_sweep(monkeypatch):
    """Make any sweep fail the test: a bad option must be refused before the work starts."""
    import adaopt.diagnostics
    import adaopt.lab.run

    def boom(*args, **kwargs):
        raise AssertionError("the sweep ran before the options were checked")

    monkeypatch.setattr(adaopt.lab.run, "run_lab", boom)
    monkeypatch.setattr(adaopt.diagnostics, "lr_find", boom)


TINY_LAB = ["--optimizers", "sgd", "--seeds", "1", "--lrs", "2", "--steps", "3"]


@pytest.mark.parametrize("command", [["lab", "--problems", "saddle"], ["compare", "saddle"]])
@pytest.mark.parametrize("where, message", [("a_file", "is a file"), ("a_file/sub", "is a file"),
                                            ("", "give a folder")])
def test_lab_bad_out_is_refused_before_the_sweep(tmp_path, monkeypatch, no_sweep, command, where, message, refused):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("keep me")
    result = runner.invoke(app, [*command, *TINY_LAB, "--out", where])
    refused(result, f"--out={where!r}", message)
    assert (tmp_path / "a_file").read_text() == "keep me"


def test_lab_unwritable_out_is_refused_before_the_sweep(tmp_path, no_sweep, refused):
    """A folder no file can be created in: read-only for a user; /proc even for root."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
    elif Path("/proc").is_dir():
        locked = Path("/proc")
    else:
        pytest.skip("running as root without /proc: no folder refuses a new file")
    try:
        result = runner.invoke(app, ["lab", "--problems", "saddle", *TINY_LAB, "--out", str(locked)])
    finally:
        if locked != Path("/proc"):
            locked.chmod(0o755)
    refused(result, "--out=", "cannot write in")


@pytest.mark.parametrize("name, message", [("nodir/lr.png", "does not exist"), ("lr.xyz", "unsupported format"),
                                           ("", "give a file name")])
def test_lr_find_bad_plot_is_refused_before_the_sweep(tmp_path, monkeypatch, no_sweep, name, message, refused):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["lr-find", "saddle", "--steps", "10", "--plot", name])
    refused(result, f"--plot={name!r}", message, ".png, .pdf, .svg" if name != "nodir/lr.png" else "nodir")


def test_lr_find_plot_without_suffix_says_the_file_it_wrote(tmp_path):
    pytest.importorskip("matplotlib")
    result = runner.invoke(app, ["lr-find", "saddle", "--steps", "10", "--plot", str(tmp_path / "lr")])
    assert result.exit_code == 0, result.output
    assert f"plot: {tmp_path / 'lr.png'}" in result.output
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(app, ["lr-find", "saddle", "--steps", "10", "--plot", str(tmp_path / "lr.svg")])
    assert result.exit_code == 0, result.output
    assert b"<svg" in (tmp_path / "lr.svg").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.png", "lr.svg"]  # no temporary files left


@pytest.mark.parametrize("option, value, message", [
    ("--lr", "-1", "--lr=-1.0: allowed a finite number > 0"),
    ("--lr", "nan", "--lr=nan"),
    ("--floor", "nan", "--floor=nan: allowed a finite number"),
    ("--target", "nan", "--target=nan: allowed a finite number"),
    ("--optimizer", "foo", "--optimizer='foo': unknown; choose from sgd, adagrad, rmsprop, adam, adamw"),
])
def test_diagnose_bad_options_exit_2(tmp_path, option, value, message, refused):
    result = runner.invoke(app, ["diagnose", str(_log(tmp_path, 1.05 ** np.arange(50))), option, value])
    refused(result, message)


def test_diagnose_a_directory_or_a_binary_file_names_it(tmp_path, refused):
    result = runner.invoke(app, ["diagnose", str(tmp_path)])
    refused(result, f"{tmp_path}: is a directory")
    binary = tmp_path / "x.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    result = runner.invoke(app, ["diagnose", str(binary)])
    refused(result, f"{binary}: not a text log", "UTF-8")


def test_compare_takes_several_problems_and_names_its_argument(no_sweep, refused):
    result = runner.invoke(app, ["compare", "saddle,nope"])
    refused(result, "PROBLEM: unknown 'nope'")
    assert "--problems" not in result.output
    result = runner.invoke(app, ["compare", "--help"])
    assert "several comma-separated" in " ".join(result.output.split())


def test_lr_find_help_lists_every_optimizer_it_accepts():
    from adaopt.cli.app import LAB_OPTIMIZERS
    from adaopt.registry import VARIANTS as OPTIMIZERS

    assert LAB_OPTIMIZERS == tuple(OPTIMIZERS)
    result = runner.invoke(app, ["lr-find", "--help"], terminal_width=200)  # one line for the list
    for name in OPTIMIZERS:
        assert name in result.output


LONG = "n" * 300  # beyond the 255 bytes a file name may have on common file systems


def test_diagnose_a_file_name_too_long_is_refused(tmp_path, refused):
    result = runner.invoke(app, ["diagnose", str(tmp_path / (LONG + ".csv"))])
    refused(result, "cannot read it", "304 bytes long", "allows 255")
    assert len(result.output.splitlines()) == 1


@pytest.mark.parametrize("command", [["lab", "--problems", "saddle"], ["compare", "saddle"]])
@pytest.mark.parametrize("where", [LONG, f"{LONG}/sub", f"ok/{LONG}"])
def test_lab_out_name_too_long_is_refused_before_the_sweep(tmp_path, monkeypatch, no_sweep, command, where, refused):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*command, *TINY_LAB, "--out", where])
    refused(result, "--out=", "300 bytes long", "allows 255")
    assert list(tmp_path.iterdir()) == []  # nothing created


@pytest.mark.parametrize("name", [LONG + ".png", LONG, f"{LONG}/lr.png"])
def test_lr_find_plot_name_too_long_is_refused_before_the_sweep(tmp_path, monkeypatch, no_sweep, name, refused):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["lr-find", "saddle", "--steps", "10", "--plot", name])
    refused(result, "--plot=", "bytes long", "allows 255")


def test_lr_find_plot_with_the_longest_name_allowed_is_written(tmp_path):
    """255 bytes is a legal name: the temporary file beside it must not be longer (it was
    '.<name>.<pid>.<random>.tmp', refused by the file system after the sweep)."""
    pytest.importorskip("matplotlib")
    png = tmp_path / ("p" * 251 + ".png")
    result = runner.invoke(app, ["lr-find", "saddle", "--steps", "10", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == [png.name]


def test_report_atomic_write_is_the_shared_one(tmp_path, monkeypatch):
    """adaopt.lab.report.atomic_write keeps its name and writes through adaopt._io: a name of
    255 bytes, fsynced, no temporary file left."""
    import adaopt._io
    from adaopt.lab.report import atomic_write

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(adaopt._io.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    target = tmp_path / ("r" * 255)
    atomic_write(target, "text")
    atomic_write(target, b"bytes")
    assert target.read_bytes() == b"bytes" and len(synced) == 2
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_compare_report_in_a_folder_with_the_longest_name_allowed(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / ("d" * 255)
    result = runner.invoke(app, ["compare", "saddle", *TINY_LAB, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file()
