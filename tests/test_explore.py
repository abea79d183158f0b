"""``adaopt explore``'s JSON API, without a browser: what each endpoint answers, that its numbers are
adaopt's own (the lab's batched sweep, ``adaopt.minimize``, the lesson's tables), and that bad input
gets a 4xx JSON error naming the problem while the server keeps answering."""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

import adaopt
from adaopt.expr import parse
from adaopt.explore import compute, lesson
from adaopt.explore.problems import SURFACES, InputError
from adaopt.explore.server import MAX_BODY, _json, make_server
from adaopt.lab.sweep import run_sweep

SIX = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")


@pytest.fixture(scope="module")
def url():
    server = make_server(0, warm=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def call(url, path, body=None, method=None, raw=None):
    """(status, decoded JSON or text) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            status, text, kind = res.status, res.read().decode(), res.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        status, text, kind = err.code, err.read().decode(), err.headers["Content-Type"]
    return status, (json.loads(text) if kind == "application/json" else text)


def request(problem="rosenbrock", steps=200, lrs=None, **extra):
    lrs = lrs or {name: 1e-3 for name in SIX}
    return {"problem": problem, "steps": steps, "optimizers": [{"name": n, "lr": lr} for n, lr in lrs.items()], **extra}


# ---------------------------------------------------------------------------- the endpoints


def test_problems_lists_the_surfaces_optimizers_and_presets(url):
    status, out = call(url, "/api/problems")
    assert status == 200
    names = [p["name"] for p in out["problems"]]
    assert names == ["rosenbrock", "beale", "saddle", "quadratic", "quadratic_rotated", "custom"]
    assert {o["name"] for o in out["optimizers"]} == set(adaopt.registry.VARIANTS)
    assert [o["name"] for o in out["optimizers"] if o["shown"]] == list(SIX)
    assert [p["id"] for p in out["lesson"]] == list(lesson.PRESETS)
    for p in out["problems"]:
        assert set(p["lrs"]) >= set(SIX) and all(0 < lr <= compute.MAX_LR for lr in p["lrs"].values())


@pytest.mark.parametrize("problem", ["rosenbrock", "beale", "saddle"])
def test_run_equals_the_labs_batched_sweep(url, problem):
    """The page's trajectories and verdicts are the lab's: bit for bit, the same Monitor verdict."""
    lrs = {"sgd": 1e-3, "momentum": 1e-3, "adagrad": 0.1, "rmsprop": 1e-2, "adam": 0.05, "adamw": 0.05}
    status, out = call(url, "/api/run", request(problem, 300, lrs))
    assert status == 200
    for r in out["runs"]:
        sweep = run_sweep(problem, r["name"], lrs=[lrs[r["name"]]], seeds=[0], steps=300)
        assert np.array_equal(np.array(r["x"]), sweep.trajectory[:, 0])
        assert r["diagnosis"] == json.loads(json.dumps(sweep.diagnose(0).to_dict()))


def test_run_on_a_typed_function_equals_adaopt_minimize(url):
    """A typed f(x, y), the sliders (betas, eps, AMSGrad) and the panels' numbers, against adaopt.minimize."""
    f = "(1-x)**2 + 10*(y-x^2)**2 + sin(3*x)"
    req = request("custom", 150, {"adam": 0.02, "adagrad": 0.3}, expr=f, start=[-1.0, 1.5], beta1=0.8,
                  beta2=0.99, eps=1e-6, amsgrad=True)
    status, out = call(url, "/api/run", req)
    assert status == 200
    adam, adagrad = out["runs"]
    ref = adaopt.minimize(parse(f), [-1.0, 1.5], adaopt.Adam(lr=0.02, betas=(0.8, 0.99), eps=1e-6, amsgrad=True), 150)
    np.testing.assert_allclose(adam["x"], ref.x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(adam["eff_lr"], ref.eff_lr, rtol=1e-12)
    np.testing.assert_allclose(adam["f"], ref.f, rtol=1e-12, atol=1e-14)
    assert adam["hp"]["amsgrad"] is True and adam["hp"]["betas"] == [0.8, 0.99] and adam["hp"]["eps"] == 1e-6
    t = np.arange(1, 151)
    np.testing.assert_allclose(np.array(adam["bias_correction"]), np.c_[1 / (1 - 0.8**t), 1 / (1 - 0.99**t)],
                               rtol=1e-12)
    ref = adaopt.minimize(parse(f), [-1.0, 1.5], adaopt.AdaGrad(lr=0.3, eps=1e-6), 150)
    np.testing.assert_allclose(adagrad["state"]["G"], ref.state["G"], rtol=1e-12)
    assert adagrad["bias_correction"] is None


@pytest.mark.parametrize("name", list(adaopt.registry.VARIANTS))
def test_every_optimizers_panels_equal_adaopt_minimize(name):
    """Each lab optimizer's path, effective lr and state buffers, as the NumPy frontend's minimize gives them
    (RAdam's effective lr is a number before it rectifies and a row after)."""
    f, start = "(1-x)**2 + 10*(y-x^2)**2", [-1.0, 1.5]
    hp = compute.optimizer_hp(name, 0.01, {})
    out = compute.run({"problem": "custom", "expr": f, "start": start, "steps": 60,
                       "optimizers": [{"name": name, "lr": 0.01}]})["runs"][0]
    family = adaopt.registry.FAMILIES[adaopt.registry.variant(name).family]
    opt = adaopt.optim.get(family.key)(**{k: v for k, v in hp.items() if k in family.hyperparameters})
    ref = adaopt.minimize(parse(f), start, opt, 60)
    np.testing.assert_allclose(out["x"], ref.x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["eff_lr"], ref.eff_lr, rtol=1e-12, atol=1e-300)
    for symbol, values in out["state"].items():
        np.testing.assert_allclose(values, ref.state[symbol], rtol=1e-12, atol=1e-300)


def _numbers(a):
    """Every number of a nested list, None for null, in order."""
    return [v for x in a for v in _numbers(x)] if isinstance(a, list) else [a]


@pytest.mark.parametrize("problem, start", [("rosenbrock", None), ("beale", [1.0, 1.4]), ("saddle", [-1.3, 0.2])])
def test_the_pages_answer_is_the_full_one_to_the_six_digits_it_prints(url, problem, start):
    """The page asks for 6 significant digits and AdaGrad's G only: each number is the full answer's within
    half a unit in its 6th digit, written with at most 6 digits, nulls where the full one has them; the
    rest (hp, verdicts) is the same, and the answer is well under half the bytes."""
    req = request(problem, 300, {"sgd": 2e-3, "momentum": 1e-3, "adagrad": 0.5, "rmsprop": 1e-2, "adam": 0.05,
                                 "adamw": 0.05}, **({"start": start} if start else {}))
    full = compute.run(req)
    page = compute.run({**req, "digits": 6, "state": ["G"]})
    assert len(_json(page)) < 0.45 * len(_json(full))
    for r, f in zip(page["runs"], full["runs"]):
        assert set(r["state"]) == ({"G"} & set(f["state"])) and set(r) == set(f)
        assert {k: r[k] for k in ("name", "hp", "diagnosis")} == {k: f[k] for k in ("name", "hp", "diagnosis")}
        for key in ("x", "f", "eff_lr", "bias_correction", "state"):
            sent = _numbers(list(r[key].values()) if key == "state" else r[key] or [])
            exact = _numbers(list(f[key][k] for k in r[key]) if key == "state" else f[key] or [])
            assert len(sent) == len(exact) > 0 or key in ("bias_correction", "state")
            for v, w in zip(sent, exact):
                assert (v is None) == (w is None)
                if v is not None:
                    assert abs(v - w) <= 0.5e-5 * abs(w) * (1 + 1e-12) and float(f"{v:.6g}") == v, (key, v, w)


def test_rounding_to_significant_digits_at_the_edges():
    from adaopt.explore.answer import rounded

    a = np.array([0.0, -0.0, 1.0, 10.0, 1e-3, 999999.6, 9.9999996, -2.5e-7, 1e-30, -3.14159265e-200, 1.2345678e12,
                  5e-324, 1.7e308, np.nan, np.inf, -np.inf, 123456.5, 0.1 + 0.2])
    for digits in (3, 6, 10):
        r = rounded(a, digits)
        finite = np.isfinite(a)
        assert np.array_equal(np.isnan(r), np.isnan(a)) and np.array_equal(r[~finite & ~np.isnan(a)],
                                                                            a[~finite & ~np.isnan(a)])
        assert np.all(np.abs(r[finite] - a[finite]) <= 0.5 * 10.0 ** (1 - digits) * np.abs(a[finite]) * (1 + 1e-12))
        assert all(float(f"{v:.{digits}g}") == v for v in r[finite])
    assert rounded(a, 6)[6] == 10.0 and rounded(a, 3)[5] == 1e6 and rounded(a, 6)[-1] == 0.3


def test_switches_reach_the_rules(url):
    lrs = {"momentum": 1e-3, "rmsprop": 1e-2, "adam": 0.05, "adam-nobc": 0.05}
    _, base = call(url, "/api/run", request("beale", 100, lrs))
    _, switched = call(url, "/api/run", request("beale", 100, lrs, nesterov=True, centered=True,
                                                bias_correction=False, conventions="lesson", rho=0.95))
    hp = {r["name"]: r["hp"] for r in switched["runs"]}
    assert hp["momentum"]["nesterov"] and hp["rmsprop"]["centered"] and hp["rmsprop"]["alpha"] == 0.95
    assert hp["rmsprop"]["eps_in_sqrt"]  # the lesson's preset: eps inside the root
    assert not hp["adam"]["bias_correction"]
    by_name = {r["name"]: r for r in switched["runs"]}
    assert by_name["adam"]["x"] == by_name["adam-nobc"]["x"]  # Adam without correction is adam-nobc
    _, page_defaults = call(url, "/api/run", request("beale", 10, {"nesterov": 1e-3, "adam-nobc": 0.05},
                                                     nesterov=False, bias_correction=True))
    hp = {r["name"]: r["hp"] for r in page_defaults["runs"]}  # the switches leave a variant's own setting
    assert hp["nesterov"]["nesterov"] is True and hp["adam-nobc"]["bias_correction"] is False
    for before, after in zip(base["runs"], switched["runs"]):
        if before["name"] != "adam-nobc":
            assert before["x"] != after["x"], before["name"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotating_the_quadratic_takes_away_the_per_coordinate_learning_rate(url, seed):
    """Axis-aligned, RMSprop and Adam give x a larger step than y (its curvature is 50x smaller);
    turned 45 degrees, both coordinates see the same gradients and get the same step."""
    ratios = {}
    for problem in ("quadratic", "quadratic_rotated"):
        start = SURFACES[problem].x0(seed).tolist()
        _, out = call(url, "/api/run", request(problem, 300, {"rmsprop": 0.05, "adam": 0.1}, start=start))
        for r in out["runs"]:
            e = np.array(r["eff_lr"])
            ratios[problem, r["name"]] = np.median(e[:, 0] / e[:, 1])
    for name in ("rmsprop", "adam"):
        assert ratios["quadratic", name] > 5
        assert 0.8 < ratios["quadratic_rotated", name] < 1.25


def test_surface_grid(url):
    status, out = call(url, "/api/surface", {"problem": "custom", "expr": "log(x) + y**2", "n": 5,
                                             "bounds": [[-1, 1], [-1, 1]]})
    assert status == 200 and len(out["z"]) == 5 and out["x"][0] == -1 and out["y"][-1] == 1
    assert out["z"][2][0] is None and out["z"][2][4] == pytest.approx(0.0)  # log(-1): null; log(1) + 0
    status, out = call(url, "/api/surface", {"problem": "saddle"})
    assert status == 200 and len(out["z"]) == 80 and out["bounds"] == [[-1.5, 1.5], [-1.5, 1.5]]


def test_lesson_presets_reproduce_the_lessons_tables(url):
    status, ex1 = call(url, "/api/lesson/example1")
    assert status == 200
    checks = {c["what"]: c for c in ex1["checks"]}
    assert checks["x3"]["adaopt"] == "3.902" == checks["x3"]["lesson"]
    assert checks["x2"]["lesson"] == "4.165" and checks["x2"]["adaopt"] == "4.16552"  # where the lesson rounds
    assert checks["G3"]["adaopt"] == "25040.6" and checks["lr_eff at step 3"]["adaopt"] == "0.0032"
    assert ex1["runs"][0]["rows"][2] == ["3", "4.16552", "83.3104", "25040.6", "0.00315971", "3.90228", "152.278"]
    values = {p: {c["what"]: c["adaopt"] for c in call(url, f"/api/lesson/{p}")[1]["checks"]}
              for p in ("example2", "example3", "practice1", "practice2", "practice3", "practice4")}
    assert values["example2"]["AdaGrad lr_eff at step 1000"] == "0.000246"
    assert values["example2"]["AdaGrad x1000"] == "4.625"
    assert values["example3"]["first step, uncorrected"] == "0.316" and values["example3"]["m_hat1 (corrected)"] == "2"
    assert values["practice1"]["step size at the end / lr"] == "0.05263"
    assert values["practice2"]["steps with step < lr/2, beta2 = 0.999"] == "8101"
    assert values["practice2"]["steps with step < lr/2, beta2 = 0.9999"] == "79652"
    assert values["practice3"]["lr_eff at step 100"] == "0.01" and values["practice3"]["lr_eff at step 10000"] == "0.001"
    assert values["practice4"]["half-life ln 0.5 / ln rho, rho = 0.9"] == "6.579"


def test_the_page_and_its_files_are_served_from_the_package_and_fetch_nothing(url):
    status, page = call(url, "/")
    assert status == 200 and "/static/app.js" in page and "/static/plot.js" in page
    for name in ("app.js", "plot.js", "style.css"):
        status, text = call(url, f"/static/{name}")
        assert status == 200 and len(text) > 500
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert "http" not in page.replace("http-equiv", "")


# ---------------------------------------------------------------------------- bad input


BAD_RUNS = [
    ({"problem": "custom", "expr": "x**2 +* y"}, 400, "column"),
    ({"problem": "custom", "expr": "x" + "+x" * 400}, 400, "at most 500"),
    ({"problem": "custom", "expr": "import os"}, 400, "unknown name 'import'"),
    ({"problem": "custom", "expr": "log(x) + y", "start": [-1, 0]}, 400, "not finite at (-1, 0)"),
    ({"problem": "custom", "expr": "1/0 + x"}, 400, "division by zero"),
    ({"problem": "custom"}, 400, "needs expr"),
    ({"problem": "himmelblau"}, 400, "unknown problem 'himmelblau'"),
    ({"steps": 0}, 400, "steps=0 is invalid"),
    ({"steps": 10**6}, 400, "steps=1000000 is invalid: allowed an integer >= 1 and <= 2000"),
    ({"steps": 2.5}, 400, "steps=2.5"),
    ({"steps": True}, 400, "steps=True"),
    ({"start": [1e9, 0]}, 400, "start x=1000000000.0 is invalid"),
    ({"start": [0]}, 400, "start="),
    ({"optimizers": []}, 400, "optimizers must be a list"),
    ({"optimizers": [{"name": "lion", "lr": 0.1}]}, 400, "unknown optimizer 'lion'"),
    ({"optimizers": [{"name": "adam", "lr": -1}]}, 400, "lr=-1 is invalid"),
    ({"optimizers": [{"name": "adam", "lr": 1e3}]}, 400, "lr=1000"),
    ({"optimizers": [{"name": "adam", "lr": 0.1}, {"name": "adam", "lr": 0.2}]}, 400, "listed twice"),
    ({"beta2": 1.0}, 400, "beta2=1.0 is invalid"),
    ({"momentum": -0.5}, 400, "momentum=-0.5 is invalid"),
    ({"nesterov": "yes"}, 400, "nesterov='yes' is invalid: allowed true or false"),
    ({"conventions": "keras"}, 400, "conventions"),
    ({"digits": 2}, 400, "digits=2 is invalid: allowed null (full precision) or an integer >= 3 and <= 17"),
    ({"digits": 6.0}, 400, "digits=6.0"),
    ({"state": ["G", "Q"]}, 400, "state=['G', 'Q'] is invalid: allowed true (every buffer) or a list of the symbols"),
    ({"state": False}, 400, "state=False"),
    # a misspelled field is refused, not ignored (a trial's "lrr" and an SGD entry's beta1 passed as unset)
    ({"lrr": 1}, 400, "unknown field 'lrr': an optimizer's lr goes in its entry of optimizers"),
    ({"beta_2": 0.9}, 400, "unknown field 'beta_2'; did you mean 'beta2'?"),
    ({"optimizers": [{"name": "sgd", "lr": 0.1, "beta1": 0.5}]}, 400,
     "optimizers[0] (beta1 is a field of the request, for every optimizer): unknown field 'beta1'"),
]


@pytest.mark.parametrize("change, status, fragment", BAD_RUNS, ids=[f[2][:24] for f in BAD_RUNS])
def test_bad_run_requests_are_refused_with_a_message(url, change, status, fragment):
    got, out = call(url, "/api/run", {**request("rosenbrock", 50, {"momentum": 1e-3, "adam": 0.01}), **change})
    assert got == status and fragment in out["error"], out


@pytest.mark.parametrize("path, body, raw, method, status, fragment", [
    ("/api/run", None, b"{not json", None, 400, "not JSON"),
    ("/api/run", None, b'{"steps": NaN}', None, 400, "not JSON"),
    ("/api/run", None, b"[1, 2]", None, 400, "JSON object"),
    ("/api/run", None, b"x" * (MAX_BODY + 1), None, 413, "at most"),
    ("/api/run", None, None, "GET", 405, "takes POST"),
    ("/api/problems", {}, None, None, 405, "takes GET"),
    ("/api/nothing", None, None, None, 404, "/api/run"),
    ("/static/../server.py", None, None, None, 404, "no such file"),
    ("/api/lesson/example9", None, None, None, 400, "unknown lesson preset"),
    ("/api/surface", {"problem": "saddle", "n": 10**6}, None, None, 400, "n=1000000 is invalid"),
    ("/api/surface", {"problem": "saddle", "bounds": [[1, -1], [0, 1]]}, None, None, 400, "bounds="),
    ("/api/surface", {"problem": "custom", "expr": "sqrt(-1) + x"}, None, None, 400, "imaginary"),
])
def test_bad_requests_get_a_4xx_json_error(url, path, body, raw, method, status, fragment):
    got, out = call(url, path, body, method, raw)
    assert got == status and fragment in out["error"], out
    assert call(url, "/api/problems")[0] == 200  # and the server still answers


def test_broken_connections_do_not_stop_the_server(url):
    import socket

    host, port = url[len("http://"):].split(":")
    cut_short = b"POST /api/run HTTP/1.1\r\nContent-Length: 500\r\n\r\n{\"steps\":"
    for raw, expected in ((cut_short, b"HTTP/1.0 400"), (b"GARBAGE\r\n\r\n", b""), (b"\x00" * 64, b"")):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)  # the client stops sending
            reply = sock.recv(200)
        assert reply.startswith(expected), reply
        assert call(url, "/api/problems")[0] == 200


def test_a_run_that_diverges_is_answered_with_nulls_and_its_verdict(url):
    status, out = call(url, "/api/run", request("rosenbrock", 100, {"sgd": 1.0}))
    assert status == 200
    r = out["runs"][0]
    assert r["x"][-1] == [None, None] and r["diagnosis"]["verdict"] in ("DIVERGING", "NONFINITE")


def test_a_verdict_with_an_infinite_signal_is_sent_as_json(url):
    """RMSprop on the rotated bowl from here collapses its rate by an infinite factor: null, not a 400."""
    status, out = call(url, "/api/run", request("quadratic_rotated", 500, {"rmsprop": 0.05}, start=[0.9355, 1.369]))
    assert status == 200
    assert out["runs"][0]["diagnosis"]["signals"]["rate_collapse"] is None


# ---------------------------------------------------------------------------- the command


def test_explore_command_refuses_a_bad_port(refused):
    from typer.testing import CliRunner

    from adaopt.cli.app import app

    refused(CliRunner().invoke(app, ["explore", "--port", "70000", "--no-browser"]), "--port=70000")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT as Ctrl-C is POSIX")
def test_explore_command_prints_its_address_serves_and_stops_on_ctrl_c():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "adaopt", "explore", "--no-browser"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("adaopt explore: http://127.0.0.1:"), line
        address = line.split()[2].rstrip("/")
        assert call(address, "/api/problems")[0] == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err, (out, err)


def test_explore_command_says_when_the_port_is_taken(refused):
    from typer.testing import CliRunner

    from adaopt.cli.app import app

    server = make_server(0, warm=False)
    try:
        port = server.server_address[1]
        refused(CliRunner().invoke(app, ["explore", "--port", str(port), "--no-browser"]),
                f"--port={port}: cannot listen")
    finally:
        server.server_close()


def test_limits_are_finite():
    assert compute.MAX_STEPS * compute.MAX_OPTIMIZERS <= 24000 and math.isfinite(compute.MAX_COORD)


def test_a_bug_is_a_500_with_its_message_not_a_bad_request(url, monkeypatch):
    """Only the request's own faults are 400s: a ValueError from inside the computation is the server's."""
    def broken(*args):
        raise ValueError("a bug inside the computation")

    monkeypatch.setattr(compute, "trajectories", broken)
    status, out = call(url, "/api/run", request("rosenbrock", 20, {"adam": 0.01}))
    assert status == 500 and out["error"] == "internal error: ValueError: a bug inside the computation"
    status, out = call(url, "/api/run", request("rosenbrock", 0, {"adam": 0.01}))
    assert status == 400 and "steps=0" in out["error"]  # bad input is still refused before the computation
    monkeypatch.undo()
    assert call(url, "/api/run", request("rosenbrock", 20, {"adam": 0.01}))[0] == 200


def test_bad_input_is_an_input_error_and_a_value_error():
    with pytest.raises(InputError, match="unknown problem"):
        compute.parse_request({"problem": "himmelblau", "optimizers": [{"name": "adam", "lr": 0.1}]})
    with pytest.raises(InputError, match="unknown lesson preset"):
        lesson.preset("example9")
    assert issubclass(InputError, ValueError)


def _spy_paths(monkeypatch):
    """The optimizers each call of compute.paths computes, in order."""
    calls, real = [], compute.paths

    def spy(problem, start, steps, chosen):
        calls.append([name for name, _ in chosen])
        return real(problem, start, steps, chosen)

    monkeypatch.setattr(compute, "paths", spy)
    return calls


def test_a_slider_move_recomputes_only_the_runs_it_changes(monkeypatch):
    compute.RECENT.clear()
    calls = _spy_paths(monkeypatch)
    lrs = {"sgd": 2e-3, "momentum": 1e-3, "adagrad": 0.5, "rmsprop": 1e-2, "adam": 0.05, "adamw": 0.05}
    first = compute.run(request("rosenbrock", 200, lrs))
    moved = compute.run(request("rosenbrock", 200, {**lrs, "adam": 0.02}))
    betas = compute.run(request("rosenbrock", 200, {**lrs, "adam": 0.02}, beta1=0.8))
    clicked = compute.run(request("rosenbrock", 200, lrs, start=[0.5, 0.5]))
    assert calls == [list(SIX), ["adam"], ["adam", "adamw"], list(SIX)]
    assert [r for r in moved["runs"] if r["name"] != "adam"] == [r for r in first["runs"] if r["name"] != "adam"]
    compute.RECENT.clear()
    assert compute.run(request("rosenbrock", 200, {**lrs, "adam": 0.02}, beta1=0.8)) == betas  # as if computed afresh
    assert clicked["start"] == [0.5, 0.5]


@pytest.mark.parametrize("problem, expr", [("quadratic_rotated", None), ("beale", None),
                                           ("custom", "(1-x)**2 + 10*(y-x^2)**2 + sin(3*x)")])
def test_a_kept_run_equals_the_same_run_computed_in_another_batch(problem, expr):
    """The rows of a batch never mix, so a run kept from a batch of one is bit for bit the one of six."""
    lrs = {"sgd": 2e-3, "momentum": 1e-3, "adagrad": 0.1, "rmsprop": 1e-2, "adam": 0.05, "adamw": 0.05}
    req = request(problem, 300, lrs, **({"expr": expr} if expr else {}))
    compute.RECENT.clear()
    alone = {name: compute.run({**req, "optimizers": [{"name": name, "lr": lr}]})["runs"][0]
             for name, lr in lrs.items()}
    assert len(compute.RECENT) == 6
    kept = compute.run(req)["runs"]
    compute.RECENT.clear()
    together = compute.run(req)["runs"]
    for k, t in zip(kept, together):
        assert k == t == alone[t["name"]]
        assert np.array_equal(np.array(k["x"], dtype=float), np.array(t["x"], dtype=float), equal_nan=True)


def test_the_kept_runs_are_bounded_and_the_least_recent_goes_first():
    from adaopt.explore.recent import Recent

    recent = Recent(size=3)
    for i in range(5):
        recent.put(i, str(i))
        assert recent.get(2) in (None, "2")  # using 2 keeps it
    assert len(recent) == 3 and recent.get(2) == "2" and recent.get(0) is None and recent.get(1) is None
