"""The page's starting choices: which optimizers it lists and shows, and a learning rate for each on each surface.

The learning rates are picked by eye to give trajectories worth watching in 500 steps
(the lab's tuned lrs, which minimise the final loss, are often the largest stable ones
and jump about); the sliders change them.
"""

from __future__ import annotations

from .. import registry

#: The optimizers the page lists (every lab name), and the six it starts with.
OPTIMIZERS = tuple(registry.VARIANTS)
SHOWN = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")

_ADAPTIVE = {"adagrad": 0.5, "rmsprop": 0.01, "adam": 0.05, "adamw": 0.05, "adadelta": 1.0, "adamax": 0.05,
             "nadam": 0.05, "radam": 0.05, "adam-nobc": 0.05}
_PLAIN = {  # SGD, heavy ball and Nesterov: below 2 / (the largest curvature on the path)
    "rosenbrock": (1e-3, 1e-3), "beale": (0.01, 0.005), "saddle": (0.05, 0.02), "quadratic": (0.03, 0.01),
    "quadratic_rotated": (0.03, 0.01), "custom": (0.05, 0.01)}
_FASTER = {"quadratic": {"rmsprop": 0.05, "adam": 0.1, "adamw": 0.1},
           "quadratic_rotated": {"rmsprop": 0.05, "adam": 0.1, "adamw": 0.1}}

#: surface -> optimizer -> the lr its slider starts at.
DEFAULT_LRS = {
    name: {"sgd": plain, "momentum": heavy, "nesterov": heavy, **_ADAPTIVE, **_FASTER.get(name, {})}
    for name, (plain, heavy) in _PLAIN.items()
}
