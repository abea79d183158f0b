"""The picture of a diagnosis: plot_diagnosis, Monitor.plot and ``adaopt diagnose --plot``."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import adaopt  # noqa: E402
from adaopt.diagnostics import Monitor, diagnose  # noqa: E402
from adaopt.diagnostics.plot import RAW_POINTS, plot_diagnosis, running_median  # noqa: E402
from adaopt.diagnostics.verdict import as_history  # noqa: E402
from adaopt.diagnostics.verdict_watch import first_alarm  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "logs" / "gru_adamw_lr_raised_30x.csv"
PNG = b"\x89PNG\r\n\x1a\n"


def _raised(seed=0, n=400, at=210):
    """A loss falling to 0.45 at lr 3e-3, the lr raised 30x at step ``at``, the loss back at 0.71."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1)
    trend = np.where(t < at, 0.45 + 0.25 * np.exp(-t / 60), 0.71 - 0.26 * np.exp(-(t - at) / 5))
    return {"step": t.tolist(), "loss": (trend * (1 + 0.06 * rng.standard_normal(n))).tolist(),
            "lr": np.where(t < at, 3e-3, 9e-2).tolist()}


def _span(ax):
    """The x range of the shaded evidence span (the one patch axvspan adds)."""
    spans = [p for p in ax.patches if p.get_label().startswith(("diverging", "converged", "converging", "stalled",
                                                                   "slow", "oscillating", "nan/inf", "nonfinite"))]
    assert len(spans) == 1, [p.get_label() for p in ax.patches]
    span = spans[0]
    if hasattr(span, "get_width"):  # a Rectangle (matplotlib >= 3.9)
        return float(span.get_x()), float(span.get_x() + span.get_width())
    xs = np.asarray(span.get_xy())[:, 0]  # a Polygon before
    return float(np.min(xs)), float(np.max(xs))


def test_the_picture_shows_the_verdict_its_steps_the_check_and_the_lr():
    run = _raised()
    d = diagnose(run)
    ax = plot_diagnosis(run)
    assert ax.get_title(loc="left").startswith(f"{d.verdict} ({d.code})\n"), ax.get_title(loc="left")
    assert _span(ax) == (float(d.steps[0]), float(d.steps[1]))
    fired = first_alarm(as_history(run))
    assert fired is not None
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines[f"check() fires at step {fired}: DIVERGING"].get_xdata()[0] == fired
    raw = lines["loss"]
    assert np.array_equal(raw.get_xdata(), run["step"]) and np.allclose(raw.get_ydata(), run["loss"])
    assert np.allclose(lines["running median of 20"].get_ydata()[19:],
                       [np.median(run["loss"][i - 19:i + 1]) for i in range(19, 400)])
    twins = [a for a in ax.figure.axes if a is not ax]
    assert len(twins) == 1 and twins[0].get_yscale() == "log"  # the lr, 30x apart
    (lr_line,) = twins[0].get_lines()
    assert set(np.round(lr_line.get_ydata(), 6)) == {3e-3, 9e-2}
    labels = ax.get_legend().get_texts()
    assert "lr" in [t.get_text() for t in labels]  # one legend for both axes


def test_nonfinite_losses_are_marked_and_a_flat_log_has_no_twin_axis():
    t = np.arange(1, 201)
    loss = 1.0 + 0.1 * np.exp(-t / 30)
    loss[150:] = np.nan
    ax = plot_diagnosis({"step": t.tolist(), "loss": loss.tolist()})
    marks = [line for line in ax.get_lines() if line.get_label().startswith("non-finite loss")]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == list(range(151, 201))
    assert marks[0].get_label() == "non-finite loss (50 rows)"
    assert ax.get_title(loc="left").startswith("NONFINITE")
    assert len(ax.figure.axes) == 1  # no lr column, no second axis


def test_baseline_and_floor_lines_and_a_log_scale_for_a_wide_loss():
    t = np.arange(1, 301)
    run = {"step": t.tolist(), "loss": (2.3 * np.exp(-t / 20) + 1e-3).tolist()}
    ax = plot_diagnosis(run, baseline=2.3, floor=0.0)
    assert ax.get_yscale() == "log"  # 2.3 down to 1e-3
    labels = [line.get_label() for line in ax.get_lines()]
    assert "baseline 2.3" in labels and "floor 0" in labels


def test_a_long_log_is_drawn_per_bucket(tmp_path):
    n = RAW_POINTS + 5000
    loss = np.exp(-np.arange(n) / 5000) * (1 + 0.1 * np.random.default_rng(0).standard_normal(n))
    ax = plot_diagnosis({"step": list(range(1, n + 1)), "loss": loss.tolist()}, ax=None)
    lines = [line.get_label() for line in ax.get_lines()]
    assert "loss" not in lines and any(label.startswith("median per bucket of") for label in lines)
    assert any(c.get_label() == "loss (10-90% per bucket)" for c in ax.collections)
    # buckets of 100 values or more: a median of 10 jitters as much as the noise
    median = next(line for line in ax.get_lines() if line.get_label().startswith("median per bucket of"))
    assert len(median.get_xdata()) <= n // 100 and median.get_label() == "median per bucket of 100"
    assert max(len(line.get_xdata()) for line in ax.get_lines()) <= RAW_POINTS


def test_an_lr_with_rows_at_0_is_drawn_on_a_linear_axis():
    """A warmup from 0 (LambdaLR's first factor 0, a cosine annealed to 0): on a log axis its rows
    at 0 were left out."""
    n = 300
    lr = np.minimum(np.arange(n) / 50, 1.0) * 1e-3  # 0 at the first step
    loss = 2.0 * np.exp(-np.arange(n) / 100) + 0.01 * np.random.default_rng(0).standard_normal(n)
    ax = plot_diagnosis({"step": list(range(1, n + 1)), "loss": loss.tolist(), "lr": lr.tolist()})
    twin = next(other for other in ax.figure.axes if other is not ax)
    drawn = twin.get_lines()[0].get_ydata()
    assert twin.get_yscale() == "linear" and len(drawn) == n and drawn[0] == 0


def test_saving_to_a_path_and_refusing_what_is_no_axes(tmp_path):
    out = tmp_path / "run.png"
    plot_diagnosis(_raised(), ax=out)
    assert out.read_bytes()[:8] == PNG
    plot_diagnosis(FIXTURE, ax=str(tmp_path / "run.svg"))
    assert (tmp_path / "run.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(TypeError, match="pass a matplotlib Axes, a file path to save to, or nothing"):
        plot_diagnosis(_raised(), ax=3)


def test_running_median_leaves_nans_out():
    got = running_median(np.array([1.0, np.nan, 3.0, 4.0, 5.0, np.nan, np.nan, np.nan]), 3)
    assert np.allclose(got[:6], [1.0, 1.0, 2.0, 3.5, 4.0, 4.5]) and np.isnan(got[7])


def test_monitor_plot_draws_the_run_so_far(tmp_path):
    x = np.ones(8)
    opt = adaopt.Adam([x], lr=3e-3)
    mon = Monitor(opt, every=10)
    rng = np.random.default_rng(0)
    for i in range(120):
        opt.step([np.full(8, 0.1)])
        mon.log(float(np.exp(-i / 30) + 0.02 * rng.standard_normal()))
    ax = mon.plot(tmp_path / "mon.png")
    assert (tmp_path / "mon.png").read_bytes()[:8] == PNG
    assert ax.get_title(loc="left").split()[0] == mon.diagnose().verdict


def test_the_cli_draws_with_plot_and_keeps_json_clean(tmp_path):
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from adaopt.cli.app import app

    png = tmp_path / "diag"
    result = CliRunner().invoke(app, ["diagnose", str(FIXTURE), "--plot", str(png)])
    assert result.exit_code == 1, result.output  # DIVERGING, as without --plot
    assert f"plot: {png}.png" in result.output
    assert Path(f"{png}.png").read_bytes()[:8] == PNG
    runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()
    result = runner.invoke(app, ["diagnose", str(FIXTURE), "--json", "--plot", str(tmp_path / "d.svg")])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["verdict"] == "DIVERGING"  # "plot: ..." went to stderr
    assert (tmp_path / "d.svg").exists()
    result = CliRunner().invoke(app, ["diagnose", str(FIXTURE), "--plot", str(tmp_path / "d.bmp")])
    assert result.exit_code == 2 and "--plot=" in result.output and ".png, .pdf, .svg" in result.output
    assert not (tmp_path / "d.bmp").exists()


def test_a_constant_lr_gets_no_axis_and_a_short_log_a_shorter_median(tmp_path):
    """A trial: a constant lr drew a second axis ticked 0.00096-0.00104, and on a 10-row log the
    running median of 20 lay above every point; --plot at a folder wrote folder.png beside it."""
    t = np.arange(1, 11)
    ax = plot_diagnosis({"step": t.tolist(), "loss": (1.0 / t).tolist(), "lr": [1e-3] * 10})
    assert len(ax.figure.axes) == 1
    labels = [line.get_label() for line in ax.get_lines()]
    assert "running median of 2" in labels and "running median of 20" not in labels
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from adaopt.cli.app import app

    folder = tmp_path / "plots"
    folder.mkdir()
    result = CliRunner().invoke(app, ["diagnose", str(FIXTURE), "--plot", str(folder)])
    assert result.exit_code == 2 and "is a folder" in result.output, result.output
    assert not (tmp_path / "plots.png").exists()
    result = CliRunner().invoke(app, ["diagnose", str(FIXTURE), "--plot", str(FIXTURE / "x.png")])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output, result.output
    assert first_alarm(FIXTURE) is not None  # a log's path, as diagnose takes it
