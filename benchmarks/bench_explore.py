"""What a slider move costs in ``adaopt explore``: 6 optimizers x 500 steps, recomputed.

For each surface (three of the lab's, the rotated quadratic and a typed f(x, y)) the
rounds interleave, so machine noise hits every variant alike:

* ``api``: one POST /api/run through the local server (JSON in, compute, JSON out);
* ``run``: :func:`adaopt.explore.compute.run` in-process (trajectories, panels, six verdicts);
* ``paths``: the trajectories alone (the batched loop over the rules), without verdicts;
* ``lab``: the same six runs as six one-row sweeps of the lab (:func:`adaopt.lab.sweep.run_sweep`),
  which also records every Monitor signal per step: the baseline the explorer's loop replaces.

The table shows medians in ms of wall time (target for ``api``: well under 100 ms), the
CPU time of ``api`` and ``run`` (this process's, all threads: the server's thread and the
client's decoding for ``api``; on a shared machine it is what the wall time would be
without the neighbours), and ``lab / run``.

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


def _post(url: str, req: dict) -> dict:
    body = json.dumps(req).encode()
    r = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(r, timeout=60) as res:
        return json.loads(res.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()

    from adaopt.explore import compute
    from adaopt.explore.server import make_server
    from adaopt.lab.sweep import run_sweep

    server = make_server(0, warm=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/run"

    print(f"{'surface':<20} {'api ms':>8} {'api cpu':>8} {'run ms':>8} {'run cpu':>8} {'paths ms':>9} "
          f"{'lab ms':>8} {'lab/run':>8}")
    for problem, expr in CASES.items():
        req = _request(problem, expr)
        surface, start, steps, chosen = compute.parse_request(req)
        lrs = {o["name"]: o["lr"] for o in req["optimizers"]}
        variants = {
            "api": lambda: _post(url, req),
            "run": lambda: compute.run(req),
            "paths": lambda: compute.paths(surface, start, steps, chosen),
            "lab": lambda: [run_sweep(surface, n, lrs=[lrs[n]], seeds=[0], steps=steps) for n in SIX],
        }
        times = {k: [] for k in variants}
        cpu = {k: [] for k in variants}
        for fn in variants.values():  # warm up
            fn()
        for _ in range(args.rounds):
            for name, fn in variants.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                times[name].append(1e3 * (time.perf_counter() - t0))
                cpu[name].append(1e3 * (time.process_time() - c0))
        med = {k: statistics.median(v) for k, v in times.items()}
        mcpu = {k: statistics.median(v) for k, v in cpu.items()}
        print(f"{problem:<20} {med['api']:8.1f} {mcpu['api']:8.1f} {med['run']:8.1f} {mcpu['run']:8.1f} "
              f"{med['paths']:9.1f} {med['lab']:8.1f} {med['lab'] / med['run']:7.1f}x")
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
