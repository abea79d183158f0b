"""``adaopt explore``: the lesson as a page you can play with, computed by adaopt's own rules.

A small server (the standard library's :mod:`http.server`: no dependency beyond NumPy)
serves one page and a JSON API. The page (``static/``: HTML, CSS and two scripts written
here, drawing on a plain ``<canvas>``; nothing is fetched from the internet) lets a
learner pick a surface or type f(x, y), click a start, and watch several optimizers'
trajectories on its contours, with the per-step loss, effective learning rates,
bias-correction factors and AdaGrad's accumulator, and the Monitor's verdict per run.
The trajectories are computed on the server (:mod:`.compute`), the lesson's worked
examples by :func:`adaopt.minimize` (:mod:`.lesson`). ``docs/explore.md`` has the API.

>>> from adaopt.explore import compute
>>> out = compute.run({"problem": "quadratic", "steps": 3, "optimizers": [{"name": "sgd", "lr": 0.01}]})
>>> [round(v, 4) for v in out["runs"][0]["x"][1]]
[-2.475, 0.5]
"""

from __future__ import annotations

import sys
import webbrowser

from .server import make_server, stop_warming

__all__ = ["make_server", "serve"]


def serve(port: int = 0, open_browser: bool = True, out=sys.stdout) -> None:
    """Serve the explorer on 127.0.0.1:``port`` (0: a free one) until Ctrl-C; print its address."""
    server = make_server(port)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    print(f"adaopt explore: {url}  (Ctrl-C stops it)", file=out, flush=True)
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("adaopt explore: stopped", file=out, flush=True)
    finally:
        server.server_close()
        stop_warming(server)
