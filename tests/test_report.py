"""The lab's plots and report: valid self-contained HTML, tidy CSV/JSON, reproducible numbers."""

import base64
import csv
import json
from html.parser import HTMLParser

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.axes import Axes  # noqa: E402

from adaopt.lab import plots  # noqa: E402
from adaopt.lab.report import images_in_report, summary_text, write_report  # noqa: E402
from adaopt.lab.run import run_lab  # noqa: E402

PROBLEMS = ("quadratic", "rosenbrock", "saddle")
OPTIMIZERS = ("sgd", "momentum", "adam", "adagrad")
LRS = (1e-3, 1e-2, 1e-1, 1.0)
SEEDS = (0, 1)
STEPS = 100
PNG = b"\x89PNG\r\n\x1a\n"
#: Tags that must open and close in pairs, properly nested.
STRUCTURAL = {"html", "head", "body", "header", "section", "div", "table", "thead", "tbody", "tr",
              "th", "td", "ul", "li", "figure", "figcaption", "p", "h1", "h2", "h3", "title",
              "style", "span", "strong"}
VOID = {"img", "meta", "br"}


def _tiny_lab():
    return run_lab(problems=PROBLEMS, optimizers=OPTIMIZERS, lrs=LRS, seeds=SEEDS, steps=STEPS)


@pytest.fixture(scope="module")
def lab():
    return _tiny_lab()


@pytest.fixture(scope="module")
def report(lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_report(lab, out)


class _Checker(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.images, self.tags = [], [], [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        if tag in STRUCTURAL:
            self.stack.append(tag)
        elif tag not in VOID:
            self.errors.append(f"unexpected tag <{tag}>")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in STRUCTURAL:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            self.errors.append(f"end tag for void <{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def test_report_is_valid_self_contained_html(lab, report):
    assert report.name == "report.html" and report.exists()
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    assert {"html", "body", "table", "section", "div"} <= checker.tags
    assert "<script" not in text and "<link" not in text and "http://" not in text
    # 3 plots per problem, trajectories for the two 2-D problems, bias correction, verdicts
    expected = 3 * len(PROBLEMS) + 2 + 2
    assert images_in_report(lab) == expected == len(checker.images)
    for img in checker.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG)
        assert img.get("alt")


def test_report_says_what_was_run_and_what_disagrees(lab, report):
    text = report.read_text(encoding="utf-8")
    for name in PROBLEMS + OPTIMIZERS:
        assert name in text
    assert "Why Adam dominates practice" in text
    assert f"{lab.seconds:.1f} s" in text
    # the measured bias-correction claim disagrees with the lesson and the report says so
    disagree = [e for e in lab.evidence() if not e["agrees"]]
    assert disagree
    assert text.count("the measurement disagrees with the lesson") == len(disagree)
    # sections come in the documented order
    order = [text.index(s) for s in ('id="summary"', 'id="evidence"', 'id="problem-quadratic"',
                                      'id="problem-saddle"', 'id="bias-correction"', 'id="verdict-grid"')]
    assert order == sorted(order)
    assert text.count('<tr class="best">') >= len(PROBLEMS)  # one per problem, or more on a tie


def test_results_csv_and_json_hold_one_record_per_run(lab, report):
    out = report.parent
    keys = {(p, o, lr, s) for p in PROBLEMS for o in OPTIMIZERS for lr in LRS for s in SEEDS}
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(keys)
    assert {(r["problem"], r["optimizer"], float(r["lr"]), int(r["seed"])) for r in rows} == keys
    doc = json.loads((out / "results.json").read_text())
    records = doc["records"]
    assert len(records) == len(keys)
    assert {(r["problem"], r["optimizer"], r["lr"], r["seed"]) for r in records} == keys
    assert records == json.loads(json.dumps(lab.records()))
    assert len(doc["summary"]) == len(PROBLEMS) * len(OPTIMIZERS)
    assert [e["column"] for e in doc["evidence"]] == [e["column"] for e in lab.evidence()]
    assert doc["seconds"] == pytest.approx(lab.seconds)
    assert doc["steps"] == {p: STEPS for p in PROBLEMS}
    assert all("seconds" not in r for r in records)
    with open(out / "summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert len(summary) == len(PROBLEMS) * len(OPTIMIZERS)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_summary_text_is_a_fixed_width_table(lab):
    text = summary_text(lab)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["problem", "optimizer"]
    body = lines[2:2 + len(PROBLEMS) * len(OPTIMIZERS)]
    assert len(body) == len(PROBLEMS) * len(OPTIMIZERS)
    assert {line.split()[0] for line in body if line.endswith("*")} == set(PROBLEMS)
    assert len({line.index(" +- ") for line in body}) == 1  # the loss column lines up
    # a best lr at the grid's edge is marked (a trial: nothing said the grid may be too narrow)
    for line, row in zip(body, lab.summary()):
        lrs = lab.sweep(row["problem"], row["optimizer"]).lrs
        mark = "<" if np.isclose(row["best_lr"], min(lrs)) else ">" if np.isclose(row["best_lr"], max(lrs)) else ""
        assert (mark + f"{row['best_lr']:.3g}") in line.split(), line
    assert any(line.startswith("< or >: the best lr is the grid's") for line in lines) == any(
        c in line.split()[2] for line in body for c in "<>")


def _drawn(ax):
    return len(ax.lines) + len(ax.collections) + len(ax.images)


PLOTS = [
    ("trajectories", lambda lab, ax: plots.plot_trajectories(lab, "rosenbrock", ax=ax)),
    ("loss_curves", lambda lab, ax: plots.plot_loss_curves(lab, "quadratic", ax=ax)),
    ("lr_sensitivity", lambda lab, ax: plots.plot_lr_sensitivity(lab, "quadratic", ax=ax)),
    ("effective_lr", lambda lab, ax: plots.plot_effective_lr(lab, "saddle", ax=ax)),
    ("bias_correction", lambda lab, ax: plots.plot_bias_correction(steps=100, ax=ax)),
    ("verdicts", lambda lab, ax: plots.plot_verdicts(lab, ax=ax)),
]


@pytest.mark.parametrize("name, draw", PLOTS, ids=[n for n, _ in PLOTS])
def test_every_plot_returns_its_axes_with_something_drawn(lab, name, draw):
    from matplotlib.figure import Figure

    ax = draw(lab, None)
    assert isinstance(ax, Axes) and _drawn(ax) > 0
    given = Figure().add_subplot()
    assert draw(lab, given) is given and _drawn(given) > 0
    assert plots.figure_png(ax).startswith(PNG)
    assert plots.figure_png(given.figure).startswith(PNG)


def test_trajectories_need_a_2d_problem(lab):
    with pytest.raises(ValueError, match="quadratic"):
        plots.plot_trajectories(lab, "quadratic")
    with pytest.raises(ValueError, match="beale"):
        plots.plot_trajectories(lab, "beale")  # 2-D, but not in this lab run


def test_same_seeds_give_the_same_results(report, tmp_path):
    again = write_report(_tiny_lab(), tmp_path)
    first = json.loads((report.parent / "results.json").read_text())
    second = json.loads((again.parent / "results.json").read_text())
    first.pop("seconds")
    second.pop("seconds")
    assert first == second
    assert (report.parent / "results.csv").read_bytes() == (again.parent / "results.csv").read_bytes()
    assert (report.parent / "summary.csv").read_bytes() == (again.parent / "summary.csv").read_bytes()
