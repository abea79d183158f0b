"""The explorer's web server: the page's static files and its JSON API, on the standard library.

=========================  ======  ===========================================================
path                       method  answer
=========================  ======  ===========================================================
``/``                      GET     the page (``static/index.html``)
``/static/<file>``         GET     its script and style, shipped in the package
``/api/problems``          GET     the surfaces, the optimizers, the presets, the limits
``/api/surface``           POST    f on a grid over the plot's range, for the contours
``/api/run``               POST    every chosen optimizer's trajectory, panels and verdict
``/api/lesson/<preset>``   GET     a worked example or practice problem, computed
=========================  ======  ===========================================================

Bad input (an :class:`~adaopt.explore.problems.InputError`) is answered ``400`` with
``{"error": "<what, its value, what is allowed>"}``;
an unknown path ``404``, a wrong method ``405``, a body over :data:`MAX_BODY` bytes
``413``. The handler never lets an exception out: any other one, a ``ValueError`` included,
is a bug, answered ``500`` with ``{"error": "internal error: <type>: <message>"}`` and every computation is bounded (steps, grid size, expression length), so a
request cannot crash or hang the server. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

import numpy as np

from .. import hyper, registry
from .._io import strict_json
from . import compute, lesson
from .defaults import DEFAULT_LRS, OPTIMIZERS, SHOWN
from .problems import MAX_EXPRESSION, SURFACES, InputError, checking_input, surface

MAX_BODY = 64 * 1024
MAX_GRID = 200
_STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
           "plot.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def problems() -> dict:
    """What the page offers: surfaces (with their ranges, starts and default lrs), optimizers, limits."""
    out = []
    for name, p in SURFACES.items():
        out.append({"name": name, "title": p.title, "description": p.description, "bounds": p.bounds,
                    "start": p.x0().tolist(), "x_opt": None if p.x_opt is None else p.x_opt.tolist(),
                    "f_opt": p.f_opt, "lrs": DEFAULT_LRS[name]})
    out.append({"name": "custom", "title": "f(x, y) you type", "description": "parsed by adaopt's own parser, "
                "differentiated exactly, never evaluated as Python", "bounds": ((-3.0, 3.0), (-3.0, 3.0)),
                "start": [1.0, 1.0], "x_opt": None, "f_opt": None, "lrs": DEFAULT_LRS["custom"]})
    optimizers = [{"name": n, "family": registry.variant(n).family, "shown": n in SHOWN,
                   "summary": registry.FAMILIES[registry.variant(n).family].summary} for n in OPTIMIZERS]
    return {"problems": out, "optimizers": optimizers, "conventions": list(hyper.PRESETS),
            "lesson": [{"id": k, "title": t} for k, t in lesson.TITLES.items()],
            "limits": {"steps": compute.MAX_STEPS, "optimizers": compute.MAX_OPTIMIZERS, "expr": MAX_EXPRESSION,
                       "coord": compute.MAX_COORD, "lr": compute.MAX_LR, "grid": MAX_GRID}}


def grid(req) -> dict:
    """f on an ``n`` x ``n`` grid over ``bounds`` (``z[j][i]`` at ``x[i]``, ``y[j]``; null where not finite)."""
    if not isinstance(req, dict):
        raise InputError("the request must be a JSON object")
    with checking_input():
        p, n, bounds = _grid_request(req)
    xs, ys = (np.linspace(float(lo), float(hi), n) for lo, hi in bounds)
    X, Y = np.meshgrid(xs, ys)
    with np.errstate(all="ignore"):
        try:
            f = p.loss(np.stack([X.ravel(), Y.ravel()], axis=-1)).reshape(n, n)
        except ValueError as exc:  # a part with no real value anywhere (1/0 folded at parse time)
            raise InputError(f"expr: {exc}") from None
    return {"problem": p.name, "bounds": [list(map(float, b)) for b in bounds], "x": xs.tolist(), "y": ys.tolist(),
            "z": compute._plain(f)}


def _grid_request(req: dict) -> tuple:
    p = surface(req.get("problem", "rosenbrock"), req.get("expr"))
    n = compute._number(req, "n", 80, 2, MAX_GRID, integer=True)
    bounds = req.get("bounds", p.bounds)
    ok = isinstance(bounds, (list, tuple)) and len(bounds) == 2 and all(
        isinstance(b, (list, tuple)) and len(b) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) <= compute.MAX_COORD
            for v in b) and b[0] < b[1] for b in bounds)
    if not ok:
        raise ValueError(f"bounds={hyper.short_repr(bounds)} is invalid: allowed [[x_min, x_max], [y_min, y_max]], "
                         f"min < max, within +-{compute.MAX_COORD:g}")
    return p, n, bounds


class Handler(BaseHTTPRequestHandler):
    """One request: a static file or an API call, answered with JSON errors, never an exception."""

    server_version = "adaopt-explore"
    timeout = 30  # a client that stops sending is dropped, not waited for

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def do_GET(self):
        self._answer("GET")

    def do_POST(self):
        self._answer("POST")

    def do_PUT(self):
        self._answer("PUT")

    def do_DELETE(self):
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        try:
            status, body, kind = self._route(method, self.path.split("?", 1)[0])
        except ApiError as exc:
            status, body, kind = exc.status, _json({"error": str(exc)}), "application/json"
        except InputError as exc:
            status, body, kind = 400, _json({"error": str(exc)}), "application/json"
        except Exception as exc:  # noqa: BLE001 - the server answers, whatever went wrong
            status, body, kind = 500, _json({"error": f"internal error: {type(exc).__name__}: {exc}"}), \
                "application/json"
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away
            pass

    def _route(self, method: str, path: str):
        if path in ("/", "/index.html"):
            return self._static(method, "index.html")
        if path.startswith("/static/"):
            return self._static(method, path[len("/static/"):])
        api = {"/api/problems": ("GET", lambda _: problems()), "/api/surface": ("POST", grid),
               "/api/run": ("POST", compute.run)}
        if path.startswith("/api/lesson/"):
            return self._call(method, "GET", lambda _: lesson.preset(path[len("/api/lesson/"):]))
        if path in api:
            return self._call(method, *api[path])
        raise ApiError(404, f"no such page or API: {path[:100]!r}; the API is /api/problems, /api/surface, "
                            "/api/run and /api/lesson/<preset>")

    def _call(self, method: str, allowed: str, fn):
        if method != allowed:
            raise ApiError(405, f"{self.path[:100]} takes {allowed}, not {method}")
        req = self._body() if method == "POST" else None
        return 200, _json(fn(req)), "application/json"

    def _body(self):
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ApiError(411, "a POST needs a Content-Length header") from None
        if length < 0 or length > MAX_BODY:
            raise ApiError(413, f"the request body is {length} bytes; at most {MAX_BODY} are allowed")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
            raise ApiError(400, f"the request body is not JSON ({exc})") from None

    def _static(self, method: str, name: str):
        if method != "GET":
            raise ApiError(405, f"/{name} takes GET, not {method}")
        if name not in _STATIC:
            raise ApiError(404, f"no such file: {name[:100]!r}")
        return 200, resources.files(__package__).joinpath("static", name).read_bytes(), _STATIC[name]


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _json(obj) -> bytes:
    text = strict_json(obj, separators=(",", ":"))  # an inf or NaN: JSON has none, the page reads null
    return text.encode("utf-8")


def make_server(port: int = 0, verbose: bool = False, warm: bool = True) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:``port`` (0: a free port; ``server.server_address[1]`` says which).

    ``warm`` computes the lesson presets in a background thread (about 3 s), so the page's
    first click on one is answered at once."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port={hyper.short_repr(port)} is invalid: allowed 0 (a free port) to 65535")
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.verbose = verbose
    server.warm_stop = threading.Event()
    server.warming = threading.Thread(target=_warm, args=(server.warm_stop,), daemon=True) if warm else None
    if warm:
        server.warming.start()
    return server


def stop_warming(server, timeout: float = 60.0) -> None:
    """Let the warm-up thread finish the preset it is in before the interpreter exits: a
    daemon thread cut off inside compiled code at exit aborts the process ("terminate called
    without an active exception", exit -6)."""
    server.warm_stop.set()
    if server.warming is not None:
        server.warming.join(timeout)


def _warm(stop: threading.Event) -> None:
    for name in lesson.PRESETS:
        if stop.is_set():
            return
        lesson.preset(name)
