"""The lab's report: one self-contained HTML page, plus the tidy results as CSV and JSON.

:func:`write_report` writes, into ``out_dir``:

- ``report.html``: every plot embedded as a base64 PNG, a little inline CSS, no scripts
  and nothing fetched from elsewhere;
- ``results.csv`` and ``results.json``: one record per (problem, optimizer, lr, seed),
  from :meth:`LabResult.records`; the JSON also holds the run's settings, ``summary``,
  ``evidence`` and the run's total ``seconds`` (the only timing written anywhere but the
  HTML, so two runs with the same settings give the same records);
- ``summary.csv``: one row per (problem, optimizer) at its best lr.

:func:`summary_text` is the fixed-width summary table the CLI prints.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import uuid
from pathlib import Path

import numpy as np

from .problems import get_problem

__all__ = ["write_report", "summary_text", "report_html", "images_in_report"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #e6f4ea; font-weight: 600; }
tr.disagrees td { background: #fdecea; }
.no { color: #b3261e; font-weight: 600; }
.yes { color: #1e7b34; font-weight: 600; }
.detail { color: #666; font-size: 0.85em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; max-width: 640px; }
ul.verdicts > li { margin-bottom: 0.6em; }
.verdict { font-weight: 700; }
"""

_E = html.escape


# ----------------------------------------------------------------------------- helpers


def _plain(v):
    """JSON-safe: NumPy scalars and arrays to Python, non-finite floats to None."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    return v


def _fmt(v, spec: str = ".4g") -> str:
    if v is None:
        return "-"
    v = float(v)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "diverged" if v > 0 else "-inf"
    return format(v, spec)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically: :func:`adaopt._io.atomic_write` (a short
    temporary name beside it, fsynced, renamed into place), kept here under its old name."""
    from .._io import atomic_write as write

    write(path, data)


def _csv_text(rows: list[dict]) -> str:
    """Rows with possibly different keys as CSV: the union of the keys, in first-seen order."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else _plain(row.get(k))) for k in fields})
    return buf.getvalue()


def _steps(result) -> dict:
    """Steps per problem (every optimizer of a problem runs the same number)."""
    out = {}
    for (problem, _), sw in result.sweeps.items():
        out.setdefault(problem, int(sw.steps))
    return out


def _gap(problem: str, value) -> float:
    f_opt = get_problem(problem).f_opt
    return float(value) - (f_opt or 0.0)


def _best_per_problem(summary: list[dict]) -> dict:
    """problem -> the optimizers with the lowest mean final loss at their best lr (several when
    they tie to 1e-12; none when every run diverged)."""
    lowest: dict = {}
    for row in summary:
        v = row["final_loss_mean"]
        if math.isfinite(v):
            lowest[row["problem"]] = min(v, lowest.get(row["problem"], math.inf))
    best: dict = {}
    for row in summary:
        low = lowest.get(row["problem"])
        if low is not None and abs(row["final_loss_mean"] - low) <= 1e-12 * max(1.0, abs(low)):
            best.setdefault(row["problem"], set()).add(row["optimizer"])
    return best


def _has_accuracy(summary: list[dict]) -> bool:
    return any("test_accuracy_mean" in row for row in summary)


# ------------------------------------------------------------------------- plain text


def summary_text(result, summary: list[dict] | None = None) -> str:
    """The summary table as fixed-width text: one line per (problem, optimizer) at its best
    lr; ``*`` marks the lowest mean final loss of each problem."""
    summary = result.summary() if summary is None else summary
    best = _best_per_problem(summary)
    acc = _has_accuracy(summary)
    header = ["problem", "optimizer", "best lr", "final loss", "(+- std)"]
    header += ["test acc"] if acc else []
    header += ["verdict", ""]
    lines, edges = [header], False
    for row in summary:
        edge = _grid_edge(result, row)
        edges |= bool(edge)
        line = [row["problem"], row["optimizer"], edge + _fmt(row["best_lr"], ".3g"),
                _fmt(row["final_loss_mean"]), f"+- {_fmt(row['final_loss_std'], '.2g')}"]
        if acc:
            line.append(_fmt(row.get("test_accuracy_mean"), ".3f"))
        line += [row["verdict"], "*" if row["optimizer"] in best.get(row["problem"], ()) else ""]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {2, 3} | ({5} if acc else set())
    out = []
    for n, line in enumerate(lines):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths[:-1]))
    out.append("* lowest mean final loss for the problem (ties all marked)")
    if edges:
        out.append("< or >: the best lr is the grid's lowest or highest: the best may lie beyond it (widen --lrs)")
    return "\n".join(out) + "\n"


def _grid_edge(result, row: dict) -> str:
    """"<" when the row's best lr is its sweep's lowest, ">" its highest, else "" (a sweep of one lr: "")."""
    try:
        lrs = result.sweep(row["problem"], row["optimizer"]).lrs
    except (KeyError, AttributeError):
        return ""
    if len(lrs) < 2 or row.get("best_lr") is None:
        return ""
    if np.isclose(row["best_lr"], min(lrs)):
        return "<"
    return ">" if np.isclose(row["best_lr"], max(lrs)) else ""


# ------------------------------------------------------------------------------- HTML


def images_in_report(result) -> int:
    """How many images :func:`write_report` embeds for ``result``: per problem the loss
    curves, lr sensitivity and effective lr (plus trajectories for a 2-D problem), then the
    bias-correction plot and the verdict grid."""
    two_d = sum(get_problem(p).dim == 2 for p in result.problems)
    return 3 * len(result.problems) + two_d + 2


def _figure(ax, alt: str, caption: str) -> str:
    from .plots import figure_png

    data = base64.b64encode(figure_png(ax)).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_E(alt)}">'
            f"<figcaption>{_E(caption)}</figcaption></figure>")


def _intro(result) -> str:
    steps = _steps(result)
    lrs = np.asarray(result.lrs, dtype=float)
    per_problem = ", ".join(f"{p} {steps[p]}" for p in result.problems if p in steps)
    text = (f"This report runs {len(result.optimizers)} optimizers "
            f"({', '.join(result.optimizers)}) on {len(result.problems)} problems "
            f"({', '.join(result.problems)}), each over a grid of {len(lrs)} learning rates "
            f"({lrs.min():g} to {lrs.max():g}) and {len(result.seeds)} seeds "
            f"({', '.join(str(int(s)) for s in result.seeds)}). Steps per problem: {per_problem}. "
            f"Each pair's best lr is the one with the lowest mean final loss over the seeds; "
            f"every table and plot below is at that lr unless it says otherwise. "
            f"The whole run took {result.seconds:.1f} s.")
    return f"<p>{_E(text)}</p>"


def _summary_table(result, summary: list[dict]) -> str:
    best = _best_per_problem(summary)
    acc = _has_accuracy(summary)
    head = ["problem", "optimizer", "best lr", "final loss (mean ± std)"]
    head += ["test accuracy"] if acc else []
    head += ["verdict"]
    out = ['<table class="summary">', "<thead><tr>" + "".join(f"<th>{_E(h)}</th>" for h in head)
           + "</tr></thead>", "<tbody>"]
    edges = False
    for row in summary:
        cls = ' class="best"' if row["optimizer"] in best.get(row["problem"], ()) else ""
        edge = _grid_edge(result, row)
        edges |= bool(edge)
        cells = [f"<td>{_E(row['problem'])}</td>", f"<td>{_E(row['optimizer'])}</td>",
                 f'<td class="num">{_E(edge + _fmt(row["best_lr"], ".3g"))}</td>',
                 f'<td class="num">{_E(_fmt(row["final_loss_mean"]))} ± '
                 f'{_E(_fmt(row["final_loss_std"], ".2g"))}</td>']
        if acc:
            cells.append(f'<td class="num">{_E(_fmt(row.get("test_accuracy_mean"), ".3f"))}</td>')
        cells.append(f"<td>{_E(row['verdict'])}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table>",
            "<p class=\"detail\">Highlighted: the optimizer with the lowest mean final loss on "
            "each problem (all of them when they tie). Verdict: the majority over the seeds "
            "at the best lr." + (" &lt; or &gt; before a best lr: it is the grid's lowest or highest, and the "
                                 "best may lie beyond it (widen the lr grid)." if edges else "") + "</p>"]
    return "\n".join(out)


def _evidence_table(evidence: list[dict]) -> str:
    if not evidence:
        return ("<p>None of the table's claims could be measured with these optimizers "
                "(the comparisons need SGD with momentum, AdaGrad, RMSprop or Adam).</p>")
    out = ['<table class="evidence">',
           "<thead><tr><th>column</th><th>the lesson's claim</th><th>what we measured</th>"
           "<th>agrees?</th></tr></thead>", "<tbody>"]
    for row in evidence:
        agrees = bool(row.get("agrees"))
        verdict = ('<span class="yes">yes</span>' if agrees else
                   '<span class="no">no: the measurement disagrees with the lesson</span>')
        detail = row.get("detail") or []
        detail_html = (f'<div class="detail">{_E("; ".join(map(str, detail)))}</div>' if detail else "")
        cls = "" if agrees else ' class="disagrees"'
        out.append(f"<tr{cls}><td>{_E(str(row.get('column', '')))}</td>"
                   f"<td>{_E(str(row.get('claim', '')))}</td>"
                   f"<td>{_E(str(row.get('measured', '')))}{detail_html}</td><td>{verdict}</td></tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def _verdict_list(result, problem: str, seed_index: int = 0) -> str:
    seed = int(result.seeds[seed_index])
    out = [f"<h3>{_E(f'Verdicts at the best lr (seed {seed})')}</h3>", '<ul class="verdicts">']
    for opt in result.optimizers:
        sw = result.sweeps.get((problem, opt))
        if sw is None:
            continue
        d = sw.diagnose(sw.row(sw.best_lr_index, seed_index))
        item = (f"<li><strong>{_E(opt)}</strong> (lr {_E(f'{sw.best_lr:g}')}): "
                f'<span class="verdict">{_E(d.verdict)}</span>: {_E(d.cause)}')
        if d.evidence:
            item += ("<div>evidence:</div><ul>" + "".join(f"<li>{_E(str(e))}</li>" for e in d.evidence)
                     + "</ul>")
        if d.advice:
            item += ("<div>advice:</div><ul>" + "".join(f"<li>{_E(str(a))}</li>" for a in d.advice)
                     + "</ul>")
        out.append(item + "</li>")
    out.append("</ul>")
    return "\n".join(out)


def _problem_section(result, problem: str) -> str:
    from . import plots

    p = get_problem(problem)
    figs = []
    if p.dim == 2:
        figs.append(_figure(plots.plot_trajectories(result, problem),
                            f"{problem}: trajectories",
                            "Contours of f - f* (log-spaced levels) with each optimizer's path at "
                            "its best lr; the dots are where the paths end."))
    figs.append(_figure(plots.plot_loss_curves(result, problem), f"{problem}: loss curves",
                        "Loss (gap to the optimum when it is known) per step at each optimizer's "
                        "best lr: the median over seeds, with the min-max band."))
    figs.append(_figure(plots.plot_lr_sensitivity(result, problem), f"{problem}: lr sensitivity",
                        "Final loss against the learning rate (median over seeds); an x at the top "
                        "edge marks an lr where a seed diverged, a star each optimizer's best lr."))
    figs.append(_figure(plots.plot_effective_lr(result, problem), f"{problem}: effective lr",
                        "The median per-coordinate effective lr divided by the lr, at the best lr: "
                        "AdaGrad's only falls; RMSprop's and Adam's follow the recent gradients."))
    return "\n".join([
        f'<section class="problem" id="problem-{_E(problem)}">',
        f"<h2>{_E(p.title)}</h2>",
        f"<p>{_E(p.description)}</p>",
        '<div class="plots">', *figs, "</div>",
        _verdict_list(result, problem),
        "</section>",
    ])


def report_html(result, summary: list[dict] | None = None, evidence: list[dict] | None = None) -> str:
    """The report page as a string (what :func:`write_report` writes to ``report.html``)."""
    from . import plots

    summary = result.summary() if summary is None else summary
    evidence = result.evidence() if evidence is None else evidence
    verdicts = {(r["problem"], r["optimizer"]): r["verdict"] for r in summary}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>adaopt lab report</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>adaopt lab: adaptive learning rates, measured</h1>",
        _intro(result),
        "</header>",
        '<section id="summary">',
        "<h2>Summary</h2>",
        _summary_table(result, summary),
        "</section>",
        '<section id="evidence">',
        "<h2>" + _E("Why Adam dominates practice: the lesson's table, measured") + "</h2>",
        _evidence_table(evidence),
        "</section>",
    ]
    parts += [_problem_section(result, p) for p in result.problems]
    parts += [
        '<section id="bias-correction">',
        "<h2>Bias correction</h2>",
        '<div class="plots">',
        _figure(plots.plot_bias_correction(), "bias-correction factors",
                "Adam divides its moment estimates by 1 - beta^k: 10x for m and 1000x for v at "
                "the first step with the default betas, fading to 1 as k grows."),
        "</div>",
        "</section>",
        '<section id="verdict-grid">',
        "<h2>Verdicts</h2>",
        '<div class="plots">',
        _figure(plots.plot_verdicts(result, verdicts=verdicts), "verdict grid",
                "Each problem and optimizer, coloured by the majority verdict over the seeds at "
                "the best lr."),
        "</div>",
        "</section>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(result, out_dir) -> Path:
    """Write ``report.html``, ``results.csv``, ``results.json`` and ``summary.csv`` into
    ``out_dir`` (created if needed), each atomically; return the report's path."""
    out = Path(out_dir)
    records = result.records()
    summary = result.summary()
    evidence = result.evidence()
    doc = {
        "seconds": _plain(result.seconds),
        "problems": list(result.problems),
        "optimizers": list(result.optimizers),
        "lrs": _plain(result.lrs),
        "seeds": _plain(result.seeds),
        "steps": _steps(result),
        "records": _plain(records),
        "summary": _plain(summary),
        "evidence": _plain(evidence),
    }
    page = report_html(result, summary, evidence)  # first: without matplotlib nothing is written
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.json", json.dumps(doc, indent=1, allow_nan=False) + "\n")
    atomic_write(out / "results.csv", _csv_text(records))
    atomic_write(out / "summary.csv", _csv_text(summary))
    path = out / "report.html"
    atomic_write(path, page)
    return path
