"""adaopt against torch.optim on a real model: an MLP trained on scikit-learn's digits.

Both sides train the same network (64 -> 32 tanh -> 10, softmax cross-entropy) full
batch on a fixed, standardized subset of ``load_digits``, from the same initial
weights, for ``STEPS`` steps:

* torch: ``torch.nn.Parameter`` tensors and a ``torch.optim`` optimizer with
  ``foreach=False`` (the single-tensor CPU path adaopt's rules follow);
* adaopt: the parameters live in a dict of NumPy arrays updated in place by the
  stateful API (``opt.step(grads)``); each step copies them into fresh torch
  tensors, runs the *same* loss function and ``backward``, and hands the NumPy
  gradients to adaopt.

Both sides therefore compute their gradients with the same code from their own
parameters, and whatever difference appears at the end comes from the optimizer
arithmetic alone. It is not zero: torch's CPU kernels (``add(alpha=)``, ``addcmul``,
``addcdiv``) fuse multiply-adds, NumPy rounds each operation, so the parameters already
differ in the last ulp after the first step; the tolerances check that this stays at
rounding level over the whole run. Every optimizer and option combination is a row of
``CASES``; each row runs in float64 and in float32.

In float32, how much 200 steps amplify those last-ulp differences depends on the run and on
the machine (BLAS kernels, threads). Where the fixed float32 tolerance is not enough, the
difference may be up to 4x how far torch's own second implementation of the same run (its
fused kernels, or for RMSprop the run from a start moved one ulp) lands from its for-loop
run: tests/torch_spread.py.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

import adaopt  # noqa: E402
from torch_spread import assert_within_spread, nudge_, second_run  # noqa: E402

torch.set_num_threads(1)  # deterministic, and faster than threading for a model this small

STEPS = 200
N_SAMPLES = 256
HIDDEN = 32

# float64: the rules follow torch's order of operations, so only a few ulps of
# difference (FMA vs separate rounding) may build up; over these runs the worst entry
# uses < 1e-3 of rtol 1e-10, which leaves room for that and nothing more. The
# small atol is for entries that pass near zero (a bias crossing 0), where a
# relative tolerance means nothing.
# float32: ulps are ~1e-7, and 200 steps of a nonlinear model amplify them a little
# (the worst case used < 0.5 of the tolerance on the machine these were set on); where they
# are amplified more, torch's own spread on the run sets the bound (tests/torch_spread.py).
TOLERANCES = {
    "float64": dict(rtol=1e-10, atol=1e-12),
    "float32": dict(rtol=1e-5, atol=1e-6),
}
# State buffers live on very different scales (square_avg ~1e-5, momentum_buffer ~1),
# so their absolute tolerance is relative to the buffer's own largest entry. In float32
# that is 1e-5 (not 1e-6): a momentum buffer sums ~1/(1-momentum) normalized steps, and
# centered RMSprop's v - mean^2 cancels, so its buffer carries a few 1e-6 of the scale.
STATE_TOLERANCES = {
    "float64": dict(rtol=1e-10, atol=1e-12),
    "float32": dict(rtol=1e-5, atol=1e-5),
}
DTYPES = {"float64": (np.float64, torch.float64), "float32": (np.float32, torch.float32)}


# ---------------------------------------------------------------------- the problem


_DATA_CACHE: dict = {}


def _data64():
    """(X, y): 256 standardized digits (float64) and their labels, always the same."""
    if not _DATA_CACHE:
        digits = sklearn_datasets.load_digits()
        X = digits.data[:N_SAMPLES].astype(np.float64)
        y = digits.target[:N_SAMPLES].astype(np.int64)
        std = X.std(axis=0)
        std[std == 0] = 1.0  # constant pixels (always blank) stay 0 after centering
        _DATA_CACHE["X"] = (X - X.mean(axis=0)) / std
        _DATA_CACHE["y"] = y
    return _DATA_CACHE["X"], _DATA_CACHE["y"]


def _init_params(np_dtype) -> dict:
    """Initial weights (torch.nn.Linear's layout: W is out x in), seeded, in np_dtype."""
    rng = np.random.default_rng(0)
    d_in, d_out = 64, 10

    def uniform(shape, fan_in):
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=shape)

    params = {
        "W1": uniform((HIDDEN, d_in), d_in),
        "b1": uniform((HIDDEN,), d_in),
        "W2": uniform((d_out, HIDDEN), HIDDEN),
        "b2": uniform((d_out,), HIDDEN),
    }
    return {k: v.astype(np_dtype) for k, v in params.items()}


class Problem:
    """The data in one dtype and the loss as a function of a dict of torch tensors."""

    def __init__(self, dtype_name: str):
        self.np_dtype, self.torch_dtype = DTYPES[dtype_name]
        X, y = _data64()
        self.X = torch.tensor(X, dtype=self.torch_dtype)
        self.y = torch.tensor(y)

    def loss(self, p: dict):
        hidden = torch.tanh(self.X @ p["W1"].T + p["b1"])
        logits = hidden @ p["W2"].T + p["b2"]
        return torch.nn.functional.cross_entropy(logits, self.y)

    def objective(self, p: dict, negate: bool):
        """What the optimizer is given to minimize (or, with maximize=True, maximize).

        Maximizing the cross-entropy itself diverges, so the ``maximize`` cases
        maximize the negated loss instead: training still converges, and both sides
        get exactly the same (negated) gradients.
        """
        loss = self.loss(p)
        return -loss if negate else loss

    def loss_of_numpy(self, params: dict) -> float:
        with torch.no_grad():
            return float(self.loss({k: torch.from_numpy(v) for k, v in params.items()}))

    def numpy_grads(self, params: dict, negate: bool, names=None) -> dict:
        """Gradients (NumPy, params' dtype) from fresh torch copies of the NumPy params."""
        tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        self.objective(tp, negate).backward()
        names = params.keys() if names is None else names
        return {k: tp[k].grad.numpy() for k in names}


# ---------------------------------------------------------------------- the cases


# (id, torch class name, adaopt class, hyperparameters shared verbatim by both sides)
CASES = [
    ("sgd-plain", "SGD", adaopt.SGD, dict(lr=0.1)),
    ("sgd-momentum", "SGD", adaopt.SGD, dict(lr=0.05, momentum=0.9)),
    ("sgd-momentum-dampening", "SGD", adaopt.SGD, dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("sgd-nesterov", "SGD", adaopt.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd-weight_decay", "SGD", adaopt.SGD, dict(lr=0.1, weight_decay=0.05)),
    ("sgd-maximize", "SGD", adaopt.SGD, dict(lr=0.1, maximize=True)),
    ("adagrad-plain", "Adagrad", adaopt.Adagrad, dict(lr=0.05)),
    ("adagrad-lr_decay", "Adagrad", adaopt.Adagrad, dict(lr=0.05, lr_decay=0.01)),
    ("adagrad-initial_accumulator", "Adagrad", adaopt.Adagrad,
     dict(lr=0.05, initial_accumulator_value=0.1)),
    ("adagrad-weight_decay", "Adagrad", adaopt.Adagrad, dict(lr=0.05, weight_decay=0.05)),
    ("adagrad-maximize", "Adagrad", adaopt.Adagrad, dict(lr=0.05, maximize=True)),
    ("rmsprop-plain", "RMSprop", adaopt.RMSprop, dict(lr=1e-3)),
    ("rmsprop-centered", "RMSprop", adaopt.RMSprop, dict(lr=1e-3, centered=True)),
    ("rmsprop-momentum", "RMSprop", adaopt.RMSprop, dict(lr=5e-4, momentum=0.9)),
    ("rmsprop-centered-momentum", "RMSprop", adaopt.RMSprop,
     dict(lr=5e-4, centered=True, momentum=0.9)),
    # RMSprop's weight decay stays small: with weight_decay=0.05 some weights settle where
    # the data gradient cancels the decay, sqrt(v) shrinks there, lr/sqrt(v) grows past the
    # stability limit and the run turns chaotic after ~120 steps, amplifying torch's
    # FMA-vs-NumPy last-ulp differences to 1e-4 (in torch alone, as in adaopt).
    ("rmsprop-weight_decay", "RMSprop", adaopt.RMSprop, dict(lr=1e-3, weight_decay=1e-3)),
    ("rmsprop-maximize", "RMSprop", adaopt.RMSprop, dict(lr=1e-3, maximize=True)),
    ("adam-plain", "Adam", adaopt.Adam, dict(lr=1e-3)),
    ("adam-amsgrad", "Adam", adaopt.Adam, dict(lr=1e-3, amsgrad=True)),
    ("adam-weight_decay", "Adam", adaopt.Adam, dict(lr=1e-3, weight_decay=0.05)),
    ("adam-maximize", "Adam", adaopt.Adam, dict(lr=1e-3, maximize=True)),
    ("adam-amsgrad-weight_decay", "Adam", adaopt.Adam,
     dict(lr=1e-3, amsgrad=True, weight_decay=0.05)),
    ("adamw-default_wd", "AdamW", adaopt.AdamW, dict(lr=1e-3)),
    ("adamw-amsgrad", "AdamW", adaopt.AdamW, dict(lr=1e-3, amsgrad=True)),
    ("adamw-maximize", "AdamW", adaopt.AdamW, dict(lr=1e-3, maximize=True)),
    ("adamw-weight_decay_0.1", "AdamW", adaopt.AdamW, dict(lr=1e-3, weight_decay=0.1)),
]
CASE_PARAMS = [pytest.param(c, id=c[0]) for c in CASES]
DTYPE_PARAMS = [pytest.param(name, id=name) for name in DTYPES]


def _run_pair(torch_name, ada_cls, hp, dtype_name, steps=STEPS):
    """Train both sides; return (problem, torch params, torch opt, adaopt params, adaopt opt, losses)."""
    problem = Problem(dtype_name)
    negate = bool(hp.get("maximize", False))
    start = _init_params(problem.np_dtype)

    t_params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in start.items()}
    t_opt = getattr(torch.optim, torch_name)(list(t_params.values()), foreach=False, **hp)

    a_params = {k: v.copy() for k, v in start.items()}
    a_opt = ada_cls(a_params, **hp)

    loss0 = problem.loss_of_numpy(start)
    for _ in range(steps):
        t_opt.zero_grad()
        problem.objective(t_params, negate).backward()
        t_opt.step()

        a_opt.step(problem.numpy_grads(a_params, negate))

    t_final = {k: v.detach().numpy() for k, v in t_params.items()}
    losses = (loss0, problem.loss_of_numpy(t_final), problem.loss_of_numpy(a_params))
    return problem, t_params, t_opt, a_params, a_opt, losses


def _torch_second(torch_name, hp, dtype_name, bias_hp=None):
    """torch's second implementation of a case's run (torch_spread.second_run): (params, opt).

    ``bias_hp``: two groups, the weights and the biases with these overrides, as in
    test_param_groups_match_torch.
    """
    flags, nudge = second_run(torch_name)
    problem = Problem(dtype_name)
    negate = bool(hp.get("maximize", False))
    t_params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in _init_params(problem.np_dtype).items()}
    if nudge:
        nudge_(t_params.values())
    groups = list(t_params.values()) if bias_hp is None else [
        {"params": [t_params["W1"], t_params["W2"]]}, {"params": [t_params["b1"], t_params["b2"]], **bias_hp}]
    t_opt = getattr(torch.optim, torch_name)(groups, **flags, **hp)
    for _ in range(STEPS):
        t_opt.zero_grad()
        problem.objective(t_params, negate).backward()
        t_opt.step()
    return t_params, t_opt


def _assert_params_close(t_final: dict, a_params: dict, dtype_name: str, what="", second=None):
    """adaopt's parameters against torch's for-loop run: the fixed tolerance, and in float32
    4x torch's own spread where that is more (``second()`` makes torch's second run)."""
    for name, t_value in t_final.items():
        assert a_params[name].dtype == t_value.dtype, name
    if dtype_name == "float32":
        names = list(t_final)
        assert_within_spread([a_params[k] for k in names], [t_final[k] for k in names],
                             lambda: [second()[0][k] for k in names], **TOLERANCES[dtype_name], names=names,
                             what=f"{what} parameters differ from torch")
        return
    for name, t_value in t_final.items():
        np.testing.assert_allclose(a_params[name], t_value, **TOLERANCES[dtype_name],
                                   err_msg=f"{what} parameter {name!r} differs from torch")


def _assert_trained(losses, case_id):
    loss0, t_loss, a_loss = losses
    assert np.isfinite(t_loss) and np.isfinite(a_loss), (case_id, losses)
    # every case minimizes the cross-entropy (maximize cases maximize its negation), so
    # the loss must have come down clearly, not just by rounding
    assert t_loss < 0.5 * loss0, f"{case_id}: torch loss {loss0} -> {t_loss}: training did not move"
    assert a_loss < 0.5 * loss0, f"{case_id}: adaopt loss {loss0} -> {a_loss}: training did not move"


# ---------------------------------------------------------------------- the tests


@pytest.mark.parametrize("dtype_name", DTYPE_PARAMS)
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_matches_torch_on_digits_mlp(case, dtype_name):
    case_id, torch_name, ada_cls, hp = case
    _, t_params, _, a_params, a_opt, losses = _run_pair(torch_name, ada_cls, hp, dtype_name)

    _assert_trained(losses, case_id)
    t_final = {k: v.detach().numpy() for k, v in t_params.items()}
    _assert_params_close(t_final, a_params, dtype_name, case_id,
                         second=lambda: _torch_second(torch_name, hp, dtype_name))
    # the bound arrays were updated in place: a_opt.params are the very same arrays
    assert all(a_opt.params[k] is a_params[k] for k in a_params)
    assert all(st["step"] == STEPS for st in a_opt.state.values())


# (id, torch class name, adaopt class, hyperparameters, state buffers torch keeps)
STATE_CASES = [
    ("sgd-momentum", "SGD", adaopt.SGD, dict(lr=0.05, momentum=0.9, dampening=0.3),
     ["momentum_buffer"]),
    ("adagrad", "Adagrad", adaopt.Adagrad, dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1),
     ["sum"]),
    ("rmsprop-centered-momentum", "RMSprop", adaopt.RMSprop,
     dict(lr=5e-4, centered=True, momentum=0.9), ["square_avg", "grad_avg", "momentum_buffer"]),
    ("adam-amsgrad-weight_decay", "Adam", adaopt.Adam, dict(lr=1e-3, amsgrad=True, weight_decay=0.05),
     ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]),
    ("adamw", "AdamW", adaopt.AdamW, dict(lr=1e-3, weight_decay=0.1), ["exp_avg", "exp_avg_sq"]),
]


@pytest.mark.parametrize("dtype_name", DTYPE_PARAMS)
@pytest.mark.parametrize("case", [pytest.param(c, id=c[0]) for c in STATE_CASES])
def test_state_buffers_match_torch(case, dtype_name):
    case_id, torch_name, ada_cls, hp, keys = case
    _, t_params, t_opt, a_params, a_opt, losses = _run_pair(torch_name, ada_cls, hp, dtype_name)
    _assert_trained(losses, case_id)
    made = []

    def second_state(name, key):  # the same buffer in torch's second run (made once, when needed)
        if not made:
            made.append(_torch_second(torch_name, hp, dtype_name))
        params, opt = made[0]
        return opt.state[params[name]][key]

    for name, tp in t_params.items():
        t_state = t_opt.state[tp]
        a_state = a_opt.state[name]
        if "step" in t_state:  # torch's SGD keeps no step count
            assert a_state["step"] == int(t_state["step"]) == STEPS
        else:
            assert a_state["step"] == STEPS
        for key in keys:
            t_buf = t_state[key].numpy()
            a_buf = a_state[key]
            assert a_buf.dtype == t_buf.dtype, (name, key)
            tol = STATE_TOLERANCES[dtype_name]
            atol = tol["atol"] * max(float(np.abs(t_buf).max()), np.finfo(t_buf.dtype).tiny)
            if dtype_name == "float32":
                assert_within_spread([a_buf], [t_buf], lambda name=name, key=key: [second_state(name, key)],
                                     rtol=tol["rtol"], atol=atol, names=[f"{name}.{key}"],
                                     what="state differs from torch")
            else:
                np.testing.assert_allclose(a_buf, t_buf, rtol=tol["rtol"], atol=atol,
                                           err_msg=f"state {key!r} of {name!r} differs from torch")
        # and adaopt keeps no buffer torch does not have
        assert set(a_state) - {"step"} == set(keys), (name, sorted(a_state))


GROUP_CASES = [
    ("adamw", "AdamW", adaopt.AdamW, dict(lr=2e-3, weight_decay=0.1), dict(lr=1e-3, weight_decay=0.0)),
    ("sgd-momentum", "SGD", adaopt.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.05),
     dict(lr=0.02, weight_decay=0.0)),
]


@pytest.mark.parametrize("dtype_name", DTYPE_PARAMS)
@pytest.mark.parametrize("case", [pytest.param(c, id=c[0]) for c in GROUP_CASES])
def test_param_groups_match_torch(case, dtype_name):
    """Weights with weight decay, biases without it and at another lr: two groups each side."""
    case_id, torch_name, ada_cls, hp, bias_hp = case
    problem = Problem(dtype_name)
    start = _init_params(problem.np_dtype)
    weights, biases = ["W1", "W2"], ["b1", "b2"]

    t_params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in start.items()}
    t_opt = getattr(torch.optim, torch_name)(
        [{"params": [t_params[k] for k in weights]},
         {"params": [t_params[k] for k in biases], **bias_hp}],
        foreach=False, **hp,
    )

    a_params = {k: v.copy() for k, v in start.items()}
    a_opt = ada_cls(
        [{"params": {k: a_params[k] for k in weights}},
         {"params": {k: a_params[k] for k in biases}, **bias_hp}],
        **hp,
    )

    loss0 = problem.loss_of_numpy(start)
    for _ in range(STEPS):
        t_opt.zero_grad()
        problem.loss(t_params).backward()
        t_opt.step()

        g = problem.numpy_grads(a_params, negate=False)
        a_opt.step([{k: g[k] for k in weights}, {k: g[k] for k in biases}])

    t_final = {k: v.detach().numpy() for k, v in t_params.items()}
    _assert_trained((loss0, problem.loss_of_numpy(t_final), problem.loss_of_numpy(a_params)), case_id)
    _assert_params_close(t_final, a_params, dtype_name, what=f"{case_id} (groups)",
                         second=lambda: _torch_second(torch_name, hp, dtype_name, bias_hp=bias_hp))

    # with several groups adaopt names parameters "<group>.<key>"
    assert sorted(a_opt.state) == ["0.W1", "0.W2", "1.b1", "1.b2"]
    assert a_opt.param_groups[1]["weight_decay"] == 0.0
    assert a_opt.param_groups[1]["lr"] == bias_hp["lr"]

