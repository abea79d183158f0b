"""What a slider move costs in ``adaopt explore``: 6 optimizers x 500 steps, recomputed.

For each surface (three of the lab's, the rotated quadratic and a typed f(x, y)) the
rounds interleave, so machine noise hits every variant alike:

* ``page``: one POST /api/run through the local server as the page sends it (6 significant
  digits, AdaGrad's G only), every run computed afresh (the kept runs cleared first): a
  click on the map, or the steps, beta or preset sliders, which change every row;
* ``lr``: the same, with one optimizer's lr moved and the other five kept from the
  previous request (:mod:`adaopt.explore.recent`): what a lr slider costs;
* ``full``: the full-precision answer with every buffer (the API's default), computed afresh;
* ``run``: :func:`adaopt.explore.compute.run` in-process, afresh (trajectories, panels, verdicts);
* ``paths``: the trajectories alone (the batched loop over the rules), without verdicts;
* ``lab``: the same six runs as six one-row sweeps of the lab (:func:`adaopt.lab.sweep.run_sweep`),
  which also records every Monitor signal per step: the baseline the explorer's loop replaces.

The table shows medians in ms of wall time (target: well under 100 ms) and of CPU time
(this process's, all threads: the server's thread and the client's decoding through
HTTP; on a shared machine it is what the wall time would be without the neighbours),
the answer's size, and ``lab / run``.

Run: python benchmarks/bench_explore.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request

SIX = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")
CASES = {"rosenbrock": None, "beale": None, "saddle": None, "quadratic_rotated": None,
         "custom": "(1-x)**2 + 10*(y-x^2)**2 + sin(3*x)"}


def _request(problem: str, expr: str | None) -> dict:
    from adaopt.explore.defaults import DEFAULT_LRS

    req = {"problem": problem, "steps": 500,
           "optimizers": [{"name": n, "lr": DEFAULT_LRS[problem][n]} for n in SIX]}
    if expr:
        req["expr"] = expr
    return req


def _post(url: str, req: dict) -> int:
    body = json.dumps(req).encode()
    r = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(r, timeout=60) as res:
        raw = res.read()
    json.loads(raw)
    return len(raw)


def _variants(url: str, req: dict) -> dict:
    from adaopt.explore import compute
    from adaopt.lab.sweep import run_sweep

    surface, start, steps, chosen = compute.parse_request(req)
    lrs = {o["name"]: o["lr"] for o in req["optimizers"]}
    page = {**req, "digits": 6, "state": ["G"]}
    moved = [{**page, "optimizers": [{**o, "lr": o["lr"] * f} if o["name"] == "adam" else o
                                     for o in req["optimizers"]]} for f in (1.0, 1.5)]
    turn = iter(range(10**9))

    def afresh(fn):
        def call():
            compute.RECENT.clear()
            return fn()
        return call

    return {
        "page": afresh(lambda: _post(url, page)),
        "lr": lambda: _post(url, moved[next(turn) % 2]),  # the other five runs kept from the last one
        "full": afresh(lambda: _post(url, req)),
        "run": afresh(lambda: compute.run(req)),
        "paths": lambda: compute.paths(surface, start, steps, chosen),
        "lab": lambda: [run_sweep(surface, n, lrs=[lrs[n]], seeds=[0], steps=steps) for n in SIX],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()

    from adaopt.explore.server import make_server

    server = make_server(0, warm=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/run"

    print(f"{'surface':<18} {'page ms':>8} {'cpu':>5} {'lr ms':>6} {'cpu':>5} {'full ms':>8} {'cpu':>5} "
          f"{'run ms':>7} {'cpu':>5} {'paths':>6} {'lab ms':>7} {'lab/run':>8} {'page KB':>8} {'full KB':>8}")
    for problem, expr in CASES.items():
        req = _request(problem, expr)
        variants = _variants(url, req)
        times = {k: [] for k in variants}
        cpu = {k: [] for k in variants}
        sizes = {k: fn() for k, fn in variants.items()}  # warm up
        for _ in range(args.rounds):
            for name, fn in variants.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                times[name].append(1e3 * (time.perf_counter() - t0))
                cpu[name].append(1e3 * (time.process_time() - c0))
        m = {k: statistics.median(v) for k, v in times.items()}
        c = {k: statistics.median(v) for k, v in cpu.items()}
        print(f"{problem:<18} {m['page']:8.1f} {c['page']:5.0f} {m['lr']:6.1f} {c['lr']:5.0f} {m['full']:8.1f} "
              f"{c['full']:5.0f} {m['run']:7.1f} {c['run']:5.0f} {m['paths']:6.1f} {m['lab']:7.1f} "
              f"{m['lab'] / m['run']:7.1f}x {sizes['page'] / 1e3:8.0f} {sizes['full'] / 1e3:8.0f}")
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
