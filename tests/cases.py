"""The test cases of every registered optimizer: one table the shared tests iterate over.

``CASES[key]`` lists ``(case id, keyword arguments)`` for the optimizer of registry key
``key``. tests/test_registry.py runs each case against torch.optim (both directions of
state_dict interchange too), the fused kernels against the reference rule, the
validation of every hyperparameter, a lab sweep and low precision; tests/test_resume.py
resumes each family. A family in :data:`adaopt.registry.FAMILIES` without cases here
fails ``test_every_registered_optimizer_has_cases``.

Keyword arguments that torch.optim does not have (``bias_correction``, ``eps_in_sqrt``,
``wd_form``, ``conventions``) make a case adaopt-only: it is checked against the
reference rule, not against torch.
"""

from __future__ import annotations

CASES: dict[str, list[tuple[str, dict]]] = {
    "sgd": [
        ("plain", dict(lr=0.05)),
        ("momentum", dict(lr=0.05, momentum=0.9)),
        ("nesterov-l2", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
        ("dampening-maximize", dict(lr=0.05, momentum=0.5, dampening=0.5, maximize=True)),
    ],
    "adagrad": [
        ("default", dict(lr=0.05)),
        ("decay-g0-l2", dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.01)),
        ("eps-in-sqrt", dict(lr=0.05, eps_in_sqrt=True, eps=1e-8)),
    ],
    "rmsprop": [
        ("default", dict(lr=1e-3)),
        ("centered-momentum-l2", dict(lr=1e-3, centered=True, momentum=0.9, weight_decay=0.01)),
        ("lesson", dict(lr=1e-3, conventions="lesson")),
    ],
    "adam": [
        ("default", dict(lr=1e-2)),
        ("amsgrad-l2", dict(lr=1e-2, amsgrad=True, weight_decay=0.01)),
        ("decoupled-maximize", dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True, maximize=True)),
        ("no-bias-correction", dict(lr=1e-3, bias_correction=False)),
    ],
    "adamw": [
        ("default", dict(lr=1e-2)),
        ("amsgrad", dict(lr=1e-2, amsgrad=True, weight_decay=0.1)),
        ("optax", dict(lr=1e-2, conventions="optax")),
    ],
    "adadelta": [
        ("default", dict()),
        ("rho-l2", dict(lr=0.5, rho=0.5, weight_decay=0.01)),
        ("eps-maximize", dict(eps=1e-4, maximize=True)),
    ],
    "adamax": [
        ("default", dict(lr=2e-3)),
        ("l2", dict(lr=5e-3, weight_decay=0.01, betas=(0.8, 0.99))),
        ("maximize", dict(lr=2e-3, maximize=True)),
    ],
    "nadam": [
        ("default", dict(lr=2e-3)),
        ("l2", dict(lr=2e-3, weight_decay=0.01)),
        ("decoupled", dict(lr=2e-3, weight_decay=0.05, decoupled_weight_decay=True)),
        ("fast-momentum-maximize", dict(lr=2e-3, momentum_decay=0.1, maximize=True)),
    ],
    "radam": [
        ("default", dict(lr=1e-2)),
        ("l2", dict(lr=1e-2, weight_decay=0.01)),
        ("decoupled-betas", dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True, betas=(0.8, 0.99))),
    ],
}

#: Arguments only adaopt has: a case that sets one is not compared with torch.optim.
ADAOPT_ONLY = frozenset({"bias_correction", "eps_in_sqrt", "wd_form", "conventions"})


def rows():
    """``(key, case id, kwargs)`` for every case."""
    return [(key, cid, kw) for key, cases in CASES.items() for cid, kw in cases]


def torch_rows():
    """The cases torch.optim can run too."""
    return [(key, cid, kw) for key, cid, kw in rows() if not ADAOPT_ONLY & set(kw)]
