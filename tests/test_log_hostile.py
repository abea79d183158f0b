"""read_log on hostile and unusual files: every problem is a LogError naming the line, the
column and what is allowed (never another exception), wide headers cost linear time, big
files are streamed, Excel's BOM and tab-separated files are read, and History.save leaves
no temporary file behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc
import warnings

import numpy as np
import pytest

from adaopt.diagnostics import History, LogError, read_log
from adaopt.diagnostics.logs import checks


def _error(path) -> str:
    with pytest.raises(LogError) as info:
        read_log(path)
    message = str(info.value)
    assert str(path) in message
    assert len(message) < 600, message  # a huge cell is not echoed whole
    return message


# ---------------------------------------------------------------------- wide headers


def _run_python(code: str, timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter (a quadratic check would hang this one)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _timed_read(path, setup: str = "") -> tuple[str, float]:
    """read_log(path) in a child process (a hang fails by timeout, not forever): what it
    printed ("READ" or "LogError ...") and the seconds it took."""
    out = _run_python(f"""
        import time
        from adaopt.diagnostics import LogError, read_log
        from adaopt.diagnostics.logs import checks
        {setup}
        t = time.perf_counter()
        try:
            read_log({str(path)!r})
            print("READ")
        except LogError as exc:
            print("LogError", exc)
        print("seconds", time.perf_counter() - t)
    """)
    return out, float(out.split("seconds")[1])


def test_a_200000_column_header_is_refused_at_once(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("step,loss," + ",".join(f"c{i}" for i in range(200_000)) + "\n"
                    + "1,0.5," + ",".join("1" for _ in range(200_000)) + "\n")
    out, seconds = _timed_read(path)
    assert out.startswith("LogError"), out
    assert "line 1" in out and "200002 columns" in out and f"at most {checks.MAX_COLUMNS}" in out
    assert seconds < 5.0, out


def test_duplicate_check_of_a_wide_header_is_linear(tmp_path):
    """With the column limit lifted, 200,000 names are checked for duplicates in linear time
    (the old check counted every name in the whole header: 4e10 comparisons)."""
    path = tmp_path / "wide.csv"
    names = ["step", "loss"] + [f"c{i}" for i in range(200_000)] + ["c7"]
    path.write_text(",".join(names) + "\n")
    out, seconds = _timed_read(path, setup="checks.MAX_COLUMNS = 10**6")
    assert out.startswith("LogError"), out
    assert "'c7'" in out and "columns 10 and 200003" in out, out
    assert seconds < 5.0, out


def test_jsonl_with_too_many_keys_is_refused(tmp_path):
    path = tmp_path / "wide.jsonl"
    row = {"step": 1, "loss": 0.5, **{f"c{i}": 1.0 for i in range(checks.MAX_COLUMNS)}}
    path.write_text(json.dumps(row) + "\n")
    message = _error(path)
    assert "line 1" in message and f"more than {checks.MAX_COLUMNS} columns" in message


# ---------------------------------------------------------------------- hostile values

DEEP = "[" * 100_000 + "]" * 100_000
BIG = "9" * 200_000

CASES = [
    # (file name, text, what the message must name)
    ("meta_list.csv", "# meta: [1,2]\nstep,loss\n1,0.5\n", ["line 1", "meta", "JSON object", "list"]),
    ("meta_int.jsonl", '{"meta": 5}\n{"step": 1, "loss": 0.5}\n', ["line 1", "meta", "JSON object", "int"]),
    ("meta_deep.jsonl", '{"meta": ' + DEEP + '}\n{"step": 1, "loss": 0.5}\n', ["line 1", "nested"]),
    ("meta_deep.csv", "# meta: " + DEEP + "\nstep,loss\n1,0.5\n", ["line 1", "meta", "nested"]),
    ("meta_lr_list.jsonl", '{"meta": {"lr": [1]}}\n{"step": 1, "loss": 0.5}\n', ["line 1", "'lr'", "a number"]),
    ("meta_betas.csv", '# meta: {"betas": 5}\nstep,loss\n1,0.5\n', ["line 1", "'betas'", "two numbers"]),
    ("meta_dtype.jsonl", '{"meta": {"state_dtype": "fp99"}}\n{"step": 1, "loss": 0.5}\n',
     ["line 1", "'state_dtype'", "'fp99'", "float32"]),
    ("step_1e300.csv", "step,loss\n1,0.5\n1e300,0.4\n", ["line 3", "'step'", "1e300", "2**53"]),
    ("step_1e300.jsonl", '{"step": 1, "loss": 0.5}\n{"step": 1e300, "loss": 0.4}\n', ["line 2", "'step'", "2**53"]),
    ("step_2_63.csv", f"step,loss\n1,0.5\n{2**63},0.4\n", ["line 3", "'step'", str(2**63), "2**53"]),
    ("step_2_63.jsonl", f'{{"step": {2**63}, "loss": 0.4}}\n', ["line 1", "'step'", str(2**63), "an integer"]),
    ("step_inf.csv", "step,loss\ninf,0.4\n", ["line 2", "'step'", "'inf'"]),
    ("step_huge_digits.csv", f"step,loss\n{BIG},0.4\n", ["line 2", "'step'", "200000 characters"]),
    ("step_true.jsonl", '{"step": true, "loss": 0.4}\n', ["line 1", "'step'", "True"]),
    ("cell_200k.csv", f"step,loss\n1,{BIG}\n", ["line 2", "'loss'", "200000 characters", "at most"]),
    ("cell_200k_text.csv", "step,loss\n1," + "x" * 200_000 + "\n", ["line 2", "'loss'", "200000 characters"]),
    ("cell_200k_quoted.csv", 'step,loss\n1,"' + "1" * 200_000 + '"\n', ["line 2", "characters", "at most"]),
    ("number_200k.jsonl", f'{{"step": 1, "loss": {BIG}}}\n', ["line 1", "200000 characters"]),
    ("string_200k.jsonl", f'{{"step": 1, "loss": "{BIG}"}}\n', ["line 1", "'loss'", "200000 characters"]),
    ("number_400_digits.jsonl", f'{{"step": 1, "loss": {"9" * 400}}}\n', ["line 1", "'loss'", "float range"]),
    ("key_200k.jsonl", f'{{"step": 1, "loss": 0.5, "{"k" * 200_000}": 1}}\n', ["line 1", "column name",
                                                                              "200000 characters"]),
    ("header_200k.csv", "step,loss," + "h" * 200_000 + "\n1,0.5,1\n", ["line 1", "column name", "200000 characters"]),
    ("deep_row.jsonl", '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": ' + DEEP + '}\n', ["line 2", "nested"]),
    ("deep_line.jsonl", DEEP + "\n", ["line 1", "nested"]),
    ("nul.csv", "step,loss\n1,0.5\n2,\x000.4\n", ["line 3", "'loss'"]),
]


@pytest.mark.parametrize("name, text, needles", CASES, ids=[c[0] for c in CASES])
def test_hostile_log_is_a_log_error_naming_the_problem(tmp_path, name, text, needles):
    path = tmp_path / name
    path.write_text(text)
    message = _error(path)
    for needle in needles:
        assert needle in message, (needle, message)


def test_a_line_longer_than_the_limit_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(checks, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "long.csv"
    path.write_text("step,loss\n1,0.5\n2," + "1" * 5000 + "\n")
    message = _error(path)
    assert "line 3" in message and "longer than 1000 bytes" in message


def test_bytes_that_are_not_utf8_name_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"step,loss\n1,0.5\n2,0.4\xff\n")
    message = _error(path)
    assert "line 3" in message and "UTF-8" in message and "0xff" in message


def test_a_steps_range_and_type_are_said(tmp_path):
    path = tmp_path / "neg.csv"
    path.write_text("step,loss\n-1,0.5\n")
    message = _error(path)
    assert "an integer from 0 to 2**53 - 1" in message
    ok = tmp_path / "ok.csv"
    ok.write_text(f"step,loss\n0,0.5\n2.0,0.4\n1e3,0.3\n{2**53 - 1},0.2\n")
    assert read_log(ok).steps.tolist() == [0, 2, 1000, 2**53 - 1]


def test_hostile_logs_are_exit_2_in_the_cli(tmp_path, refused):
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from adaopt.cli.app import app

    runner = CliRunner()
    for name, text, needles in CASES:
        path = tmp_path / name
        path.write_text(text)
        result = runner.invoke(app, ["diagnose", str(path)])
        # the CLI looks at the bytes first: a NUL byte is named as "not a text log" before read_log
        refused(result, "NUL byte" if "\x00" in text else needles[0])


# ---------------------------------------------------------------------- BOM, tabs, sniffing


def _rows(n=60):
    return [(s, 2.0 * 0.97**s) for s in range(1, n + 1)]


def test_utf8_bom_is_stripped(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("step,loss\n" + "".join(f"{s},{v!r}\n" for s, v in _rows()), encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    h = read_log(path)
    assert h.columns == ["step", "loss"] and len(h) == 60
    jl = tmp_path / "bom.jsonl"
    jl.write_text("".join(json.dumps({"step": s, "loss": v}) + "\n" for s, v in _rows()), encoding="utf-8-sig")
    assert len(read_log(jl)) == 60


def test_tsv_is_read_with_tabs(tmp_path):
    path = tmp_path / "run.tsv"
    path.write_text("step\tloss\tgrad_norm\n" + "".join(f"{s}\t{v!r}\t\n" for s, v in _rows()))
    h = read_log(path)
    assert h.columns == ["step", "loss"]  # grad_norm is all empty: not a column
    assert h["loss"][0] == 2.0 * 0.97


@pytest.mark.parametrize("suffix", [".txt", ""])
@pytest.mark.parametrize("sep", [",", "\t", ";"])
def test_txt_and_no_suffix_sniff_the_delimiter(tmp_path, suffix, sep):
    path = tmp_path / f"run{suffix}"
    path.write_text(f"step{sep}loss\n" + "".join(f"{s}{sep}{v!r}\n" for s, v in _rows()))
    h = read_log(path)
    assert h.columns == ["step", "loss"] and h.steps[-1] == 60


@pytest.mark.parametrize("sep", ["\t", ";"])
def test_a_csv_separated_by_tabs_or_semicolons_is_read(tmp_path, sep):
    """Excel writes semicolons (and decimal commas) where the comma is the decimal mark: a
    .csv header with no comma is read by what it has."""
    path = tmp_path / "run.csv"
    path.write_text(f"step{sep}loss{sep}lr\n" + "".join(f"{s}{sep}{v!r}{sep}0.001\n" for s, v in _rows()))
    h = read_log(path)
    assert h.columns == ["step", "loss", "lr"] and h.steps[-1] == 60 and h["loss"][0] == 2.0 * 0.97


def test_a_semicolon_log_may_write_decimal_commas(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("step;loss\n" + "".join(f"{s};{v:.4f}".replace(".", ",") + "\n" for s, v in _rows()))
    h = read_log(path)
    assert h["loss"][0] == 1.94 and h["loss"][-1] == float(f"{2.0 * 0.97**60:.4f}")
    bad = tmp_path / "bad.csv"
    bad.write_text("step;loss\n1;0,5\n2;0,4,1\n")
    assert "'0,4,1' is not a number" in _error(bad)
    commas = tmp_path / "commas.csv"  # a comma-separated log keeps its meaning: 0,5 is two cells
    commas.write_text("step,loss\n1,0,5\n")
    assert "3 cells" in _error(commas)


@pytest.mark.parametrize("suffix", [".tsv", ".txt", ".csv"])
def test_save_and_read_back_by_suffix(tmp_path, suffix):
    h = History({"step": [1, 2, 3], "loss": [1.0, None, float("nan")], "lr": [0.1, None, None]},
                meta={"optimizer": "adam", "lr": 0.1})
    path = h.save(tmp_path / f"run{suffix}")
    if suffix == ".tsv":
        assert "step\tloss\tlr" in path.read_text()
    back = read_log(path)
    assert back.steps.tolist() == [1, 2, 3] and back.meta == h.meta
    assert back.present("loss").tolist() == [True, False, True] and np.isnan(back["loss"][2])


def test_quoted_cells_and_crlf_are_read(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b'"step","loss"\r\n"1","0.5"\r\n2,0.25\r\n')
    h = read_log(path)
    assert h.steps.tolist() == [1, 2] and h["loss"].tolist() == [0.5, 0.25]


# ---------------------------------------------------------------------- streaming


def _peak_bytes(path) -> tuple[int, History]:
    tracemalloc.start()
    try:
        h = read_log(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, h


def test_csv_is_streamed_peak_memory_far_below_the_file(tmp_path):
    """Columns grow as packed arrays: a row of three numbers costs tens of bytes at the peak
    (the old reader kept every line's dict: hundreds)."""
    n = 100_000
    rng = np.random.default_rng(0)
    path = tmp_path / "big.csv"
    with open(path, "w") as fh:
        fh.write("step,loss,grad_norm\n")
        for s, a, b in zip(range(1, n + 1), rng.random(n).tolist(), rng.random(n).tolist()):
            fh.write(f"{s},{a!r},{b!r}\n")
    peak, h = _peak_bytes(path)
    assert len(h) == n and h["grad_norm"][-1] > 0
    size = os.path.getsize(path)
    assert peak < 0.8 * size, (peak, size)
    assert peak / n < 60, peak / n  # step 8 + two values of 9 bytes, and the arrays' headroom


def test_jsonl_is_streamed_peak_memory_far_below_the_file(tmp_path):
    n = 100_000
    path = tmp_path / "big.jsonl"
    with open(path, "w") as fh:
        fh.write(json.dumps({"meta": {"lr": 0.1}}) + "\n")
        for s in range(1, n + 1):
            row = {"step": s, "loss": 1.0 / s}
            if s % 10 == 0:
                row["val_loss"] = 2.0 / s
            fh.write(json.dumps(row) + "\n")
    peak, h = _peak_bytes(path)
    assert len(h) == n and h.present("val_loss").sum() == n // 10
    assert peak < 0.8 * os.path.getsize(path)
    assert peak / n < 80, peak / n


# ---------------------------------------------------------------------- save


class _Unwritable:
    pass


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_failed_save_leaves_no_temporary_file_and_the_old_file_intact(tmp_path, suffix):
    good = History({"step": [1, 2], "loss": [1.0, 0.5]})
    path = good.save(tmp_path / f"run{suffix}")
    before = path.read_bytes()
    bad = History({"step": [1, 2], "loss": [1.0, 0.5]}, meta={"what": _Unwritable()})
    with pytest.raises(TypeError):
        bad.save(path)
    assert sorted(os.listdir(tmp_path)) == [path.name]
    assert path.read_bytes() == before


def test_save_removes_temporary_files_of_killed_writers(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".adaopt.{dead}.0123456789ab.tmp"
    stale.write_text("half a file")
    History({"step": [1], "loss": [1.0]}, meta={"n": np.int64(3)}).save(tmp_path / "run.jsonl")
    assert sorted(os.listdir(tmp_path)) == ["run.jsonl"]
    assert read_log(tmp_path / "run.jsonl").meta == {"n": 3}  # a NumPy scalar in meta is written as a number


@pytest.mark.parametrize("state_dtype", [np.float32, np.dtype("float32"), "float32"])
def test_a_monitor_given_state_dtype_as_a_numpy_type_saves(tmp_path, state_dtype):
    """meta["state_dtype"] is the dtype's name however the optimizer was given it (a NumPy
    type in meta made JSON refuse the whole save)."""
    import adaopt
    from adaopt.diagnostics import Monitor

    x = np.ones(4, np.float32)
    opt = adaopt.Adam([x], lr=0.1, state_dtype=state_dtype)
    mon = Monitor(opt)
    for _ in range(3):
        mon.log(float(x @ x))
        opt.step([0.1 * x])
    assert mon.meta["state_dtype"] == "float32"
    for suffix in (".jsonl", ".csv"):
        assert read_log(mon.save(tmp_path / f"run{suffix}")).meta["state_dtype"] == "float32"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_save_streams_rows(tmp_path, suffix):
    """Saving a long history writes it block by block: no list of every row's dict."""
    n = 200_000
    h = History({"step": np.arange(1, n + 1), "loss": np.linspace(2, 1, n), "grad_norm": np.ones(n),
                 "lr": [0.1 if i % 10 == 0 else None for i in range(n)]})
    tracemalloc.start()
    try:
        h.save(tmp_path / f"run{suffix}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8e6, peak
    back = read_log(tmp_path / f"run{suffix}")
    assert np.array_equal(back["loss"], h["loss"]) and back.present("lr").sum() == n // 10


def test_utf16_text_is_named(tmp_path):
    path = tmp_path / "unicode.txt"
    path.write_text("step\tloss\n1\t0.5\n", encoding="utf-16")
    message = _error(path)
    assert "line 1" in message and "UTF-16" in message and "UTF-8" in message


def test_sniffing_prefers_tabs_over_commas_in_names(tmp_path):
    path = tmp_path / "run.txt"
    path.write_text("step\tloss\tloss, smoothed\n1\t0.5\t0.6\n2\t0.4\t0.5\n")
    assert read_log(path).columns == ["step", "loss", "loss, smoothed"]


# ---------------------------------------------------------------------- a last line cut off mid-write


def _cut_rows(n: int) -> list[tuple[int, float, float]]:
    return [(k, 2.0 - 0.01 * k, 1.0 + 0.001 * k) for k in range(1, n + 1)]


@pytest.mark.parametrize("tail", ["3", "3,1.9", "3,1.9,1.0,7", '3,"1.9'])
def test_a_csv_whose_last_line_was_cut_off_mid_write_is_read_without_it(tmp_path, tail):
    """A run still writing its log, or killed while it wrote, leaves a last line without an
    end of line; the whole log used to be refused for it, and those are the runs one diagnoses."""
    path = tmp_path / "run.csv"
    path.write_text("step,loss,grad_norm\n" + "".join(f"{k},{a},{b}\n" for k, a, b in _cut_rows(2)) + tail)
    with pytest.warns(checks.LogWarning, match=r"line 4, the last, has no end of line .* left out"):
        h = read_log(path)
    assert list(h.steps) == [1, 2]
    assert list(h["loss"]) == [1.99, 1.98] and list(h["grad_norm"]) == [1.001, 1.002]


def test_a_cut_off_last_row_of_a_merged_step_leaves_the_row_before_as_it_was(tmp_path):
    path = tmp_path / "metrics.csv"  # Lightning's CSVLogger: rows of one step are merged
    # the cut-off row writes val_loss 1.8 into step 2's row, then fails on train_loss (1.7, not 1.9)
    path.write_text("epoch,step,val_loss,train_loss\n0,1,2.1,2.0\n0,2,,1.9\n0,2,1.8,1.7")
    with pytest.warns(checks.LogWarning, match="left out") as said:
        h = read_log(path)
    assert said[0].filename == __file__  # the warning points at the caller's line
    assert list(h.steps) == [1, 2] and list(h["loss"]) == [2.0, 1.9]
    assert h.has("val_loss") and np.isnan(h["val_loss"][1]) and h["val_loss"][0] == 2.1


@pytest.mark.parametrize("tail, why", [
    ("30,0.", "ends in '.'"),          # of 30,0.4821: float("0.") is 0.0
    ("30,", "is empty"),               # of 30,0.4821: read as not measured
    ("30,0.48", "is shorter than the 6 characters"),
    ("30,4.8e", "cannot be read"),
])
def test_a_cut_off_last_line_that_still_parses_is_told_by_its_form(tmp_path, tail, why):
    """A trial's log cut after '599,0.' was read with a loss of 0.0 at its last step, silently."""
    path = tmp_path / "run.csv"
    path.write_text("step,loss\n" + "".join(f"{k},{2.0 * 0.98 ** k:.4f}\n" for k in range(1, 30)) + tail)
    said = rf"line 31, the last, has no end of line and .*{re.escape(why)}.* left out"
    with pytest.warns(checks.LogWarning, match=said):
        h = read_log(path)
    assert list(h.steps) == list(range(1, 30)) and h["loss"][-1] == float(f"{2.0 * 0.98 ** 29:.4f}")


@pytest.mark.parametrize("tail", ["30,0.1", "30,0.30000000000000004", "30,0.5"])
def test_an_unterminated_last_line_in_a_column_of_varying_form_is_read_as_written(tmp_path, tail):
    """Python's repr writes floats of varying width: a short last cell is no sign of a cut."""
    path = tmp_path / "run.csv"
    rows = [0.9, 0.85, 0.7125, 0.6, 0.51234, 0.45, 0.4, 0.35]
    path.write_text("step,loss\n" + "".join(f"{k},{v!r}\n" for k, v in enumerate(rows, 1)) + tail)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = read_log(path)
    assert list(h.steps)[-1] == 30 and h["loss"][-1] == float(tail.split(",")[1])


def test_a_jsonl_whose_last_line_was_cut_off_is_read_without_it(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.9}\n{"step": 3, "lo')
    with pytest.warns(checks.LogWarning, match="line 3, the last"):
        h = read_log(path)
    assert list(h.steps) == [1, 2]


@pytest.mark.parametrize("suffix, text", [
    (".csv", "step,loss\n1,2.0\n2,x\n3,1.0\n"),       # a bad line inside the log
    (".csv", "step,loss\n1,2.0\n2,1.9\n3,x\n"),       # a bad last line that did end
    (".jsonl", '{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n{"step": 3, "loss": 1.0}'),
])
def test_a_bad_line_that_was_not_cut_off_is_still_refused(tmp_path, suffix, text):
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    with pytest.raises(LogError):
        read_log(path)


def test_the_cli_says_what_it_left_out_and_diagnoses_the_rest(tmp_path):
    from typer.testing import CliRunner

    from adaopt.cli.app import app

    path = tmp_path / "run.csv"
    path.write_text("step,loss\n" + "".join(f"{k},{2.0 * 0.99 ** k}\n" for k in range(1, 101)) + "101,0.7,3")
    result = CliRunner().invoke(app, ["diagnose", str(path)])
    assert "warning:" in result.output and "line 102, the last" in result.output, result.output
    assert "steps 1-100" in result.output or "CONVERG" in result.output, result.output
    assert result.exit_code == 0, result.output


def test_a_log_of_losses_only_is_numbered_by_row_and_says_so(tmp_path):
    """``loss`` (and other measures) one a line, no step column: row k is step k. A column
    that could be the step under another name ('when') is still refused, asking for --step."""
    path = tmp_path / "losses.csv"
    path.write_text("loss,lr\n" + "".join(f"{v!r},0.001\n" for _, v in _rows()))
    h = read_log(path)
    assert h.steps.tolist() == list(range(1, 61)) and h["loss"][0] == 2.0 * 0.97
    assert "row k is taken as step k" in h.read_from["note"]
    other = tmp_path / "when.csv"
    other.write_text("when,loss\n1,0.5\n")
    assert "no 'step' column" in _error(other) and "--step" in _error(other)
    named = tmp_path / "named.csv"
    named.write_text("step,loss\n1,0.5\n2,0.4\n")
    assert read_log(named).read_from["note"] is None
