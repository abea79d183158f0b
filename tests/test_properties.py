"""Property tests (hypothesis): invariants of the rules, and checkpoints that resume exactly."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import adaopt

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4)


def grad_sequences(min_len=1, max_len=12):
    """A shape and a list of float64 gradients of that shape."""
    return shapes.flatmap(lambda shape: st.lists(
        hnp.arrays(np.float64, shape, elements=finite), min_size=min_len, max_size=max_len
    ).map(lambda gs: (shape, gs)))


# ---------------------------------------------------------------------- AdaGrad


@SETTINGS
@given(data=grad_sequences(), iav=st.sampled_from([0.0, 0.1, 3.0]),
       wd=st.sampled_from([0.0, 0.5]), conventions=st.sampled_from(["torch", "optax", "lesson"]))
def test_adagrad_accumulator_never_decreases(data, iav, wd, conventions):
    shape, grads = data
    opt = adaopt.AdaGrad(lr=0.1, initial_accumulator_value=iav, weight_decay=wd,
                         conventions=conventions)
    p = np.ones(shape)
    state = opt.init(p)
    prev = state["param"]["sum"].copy()
    np.testing.assert_array_equal(prev, np.full(shape, iav))
    for g in grads:
        p, state = opt.update(g, state, p)
        cur = state["param"]["sum"]
        assert np.all(cur >= prev), (prev, cur)
        prev = cur.copy()


# ---------------------------------------------------------------------- RMSprop


@SETTINGS
@given(data=grad_sequences(max_len=20), alpha=st.floats(0.0, 0.999),
       centered=st.booleans(), momentum=st.sampled_from([0.0, 0.9]))
def test_rmsprop_square_avg_is_at_most_the_largest_squared_gradient(data, alpha, centered, momentum):
    shape, grads = data
    opt = adaopt.RMSprop(lr=0.01, alpha=alpha, centered=centered, momentum=momentum)
    p = np.zeros(shape)
    state = opt.init(p)
    largest = np.zeros(shape)
    for g in grads:
        p, state = opt.update(g, state, p)
        largest = np.maximum(largest, g * g)
        v = state["param"]["square_avg"]
        assert np.all(v >= 0)
        assert np.all(v <= largest * (1 + 1e-12)), (v, largest)


# ---------------------------------------------------------------------- Adam


@SETTINGS
@given(
    g=hnp.arrays(
        np.float64, shapes,
        elements=st.floats(1e-3, 1e6).flatmap(lambda m: st.sampled_from([m, -m])),
    ),
    p_scale=st.floats(0.0, 10.0),
    lr=st.sampled_from([1e-4, 1e-3, 0.1]),
    betas=st.tuples(st.floats(0.0, 0.99), st.floats(0.0, 0.9999)),
    amsgrad=st.booleans(),
)
def test_adam_first_step_is_lr_times_sign_of_g(g, p_scale, lr, betas, amsgrad):
    p = np.full(g.shape, p_scale)
    opt = adaopt.Adam(lr=lr, betas=betas, eps=1e-8, amsgrad=amsgrad)
    new_p, _ = opt.update(g, opt.init(p), p)
    step = p - new_p  # the step taken; bias correction makes it lr * m-hat / sqrt(v-hat) = lr*sign(g)
    assert np.all(np.abs(step - lr * np.sign(g)) <= lr * 1e-4), (step, g)
    # and the stateful API takes the same step
    x = p.copy()
    adaopt.Adam(x, lr=lr, betas=betas, eps=1e-8, amsgrad=amsgrad).step(g)
    np.testing.assert_array_equal(x, new_p)


# ---------------------------------------------------------------------- checkpoints resume exactly


def _params(seed):
    rng = np.random.default_rng(seed)
    return {
        "w": rng.standard_normal((3, 4)),
        "b": rng.standard_normal(4).astype(np.float32),
        "s": np.asarray(rng.standard_normal()),  # a 0-d parameter
    }


def _grads(params, rng):
    return {k: np.asarray(rng.standard_normal(v.shape), dtype=v.dtype) for k, v in params.items()}


RESUME_CASES = {
    "sgd_nesterov": (adaopt.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "sgd_dampening": (adaopt.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3, maximize=True)),
    "adagrad": (adaopt.AdaGrad, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.2,
                                     weight_decay=0.01)),
    "adagrad_optax": (adaopt.AdaGrad, dict(lr=0.1, conventions="optax")),
    "rmsprop": (adaopt.RMSprop, dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5,
                                     eps_in_sqrt=True)),
    "adam": (adaopt.Adam, dict(lr=0.01, betas=(0.8, 0.99), amsgrad=True, weight_decay=0.01)),
    "adam_bf16_state": (adaopt.Adam, dict(lr=0.01, state_dtype="bfloat16")),
    "adamw": (adaopt.AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True, wd_form="add")),
    "adamw_lesson": (adaopt.AdamW, dict(lr=0.01, conventions="lesson", maximize=True)),
}


def _snapshot_state(opt):
    return copy.deepcopy(opt.state)


def _assert_same_state(a, b):
    assert set(a) == set(b)
    for name in a:
        assert set(a[name]) == set(b[name]), name
        assert a[name]["step"] == b[name]["step"]
        for k, v in a[name].items():
            if k != "step":
                assert v.dtype == b[name][k].dtype, (name, k)
                assert np.array_equal(v, b[name][k]), (name, k)


def _resume_run(cls, kw, n, m, seed, how, use_groups):
    rng_g = np.random.default_rng(seed + 1)
    grads = [_grads(_params(seed), rng_g) for _ in range(n + m)]

    def build(params):
        if use_groups:
            tree_a = {"w": params["w"], "s": params["s"]}
            groups = [{"params": tree_a}, {"params": [params["b"]], "lr": kw.get("lr", 0.01) / 2}]
            return cls(groups, **kw)
        return cls(params, **kw)

    def g_for(i):
        g = grads[i]
        return [{"w": g["w"], "s": g["s"]}, [g["b"]]] if use_groups else g

    # uninterrupted N + M
    ref = _params(seed)
    ref_opt = build(ref)
    for i in range(n + m):
        ref_opt.step(g_for(i))

    # N steps, checkpoint, then a fresh optimizer on copies of the params at the checkpoint
    first = _params(seed)
    opt = build(first)
    for i in range(n):
        opt.step(g_for(i))
    at_save = {k: v.copy() for k, v in first.items()}
    if how == "file":
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "c.npz"
            opt.save(path)
            resumed_params = {k: v.copy() for k, v in at_save.items()}
            resumed = build(resumed_params)
            resumed.load(path)
    else:
        sd = opt.state_dict()
        resumed_params = {k: v.copy() for k, v in at_save.items()}
        resumed = build(resumed_params)
        resumed.load_state_dict(sd)
        # the loaded state is a copy: scribbling on the dict afterwards changes nothing
        for st_ in sd["state"].values():
            for k, v in st_.items():
                if isinstance(v, np.ndarray):
                    v[...] = 123.0
    _assert_same_state(resumed.state, opt.state)
    for i in range(n, n + m):
        resumed.step(g_for(i))

    for k in ref:
        assert resumed_params[k].dtype == ref[k].dtype
        assert np.array_equal(resumed_params[k], ref[k]), k
    _assert_same_state(resumed.state, ref_opt.state)


@pytest.mark.parametrize("case", RESUME_CASES)
@pytest.mark.parametrize("how", ["file", "state_dict"])
@settings(max_examples=8, deadline=None)
@given(n=st.integers(0, 6), m=st.integers(1, 6), seed=st.integers(0, 2**16),
       use_groups=st.booleans())
def test_save_load_continue_equals_never_stopping(case, how, n, m, seed, use_groups):
    cls, kw = RESUME_CASES[case]
    _resume_run(cls, kw, n, m, seed, how, use_groups)


@pytest.mark.parametrize("cls", [adaopt.SGD, adaopt.AdaGrad, adaopt.RMSprop, adaopt.Adam,
                                 adaopt.AdamW])
def test_checkpoint_file_round_trips_state_dict(cls, tmp_path):
    params = _params(0)
    kw = {"momentum": 0.9} if cls is adaopt.SGD else {}
    opt = cls(params, lr=0.01, **kw)
    rng = np.random.default_rng(1)
    for _ in range(3):
        opt.step(_grads(params, rng))
    opt.save(tmp_path / "c.npz")
    other = cls(_params(0), lr=0.01, **kw)
    other.load(tmp_path / "c.npz")
    _assert_same_state(other.state, opt.state)
    assert other.param_groups == opt.param_groups


# ---------------------------------------------------------------------- float16 never makes NaN


f16_grads = st.sampled_from([0.0, 1e-6, -1e-6, 1e-7, 6e-8, 1e-4, -1e-3, 0.5, -2.0, 30.0])


@settings(max_examples=60, deadline=None)
@given(
    data=shapes.flatmap(lambda shape: st.lists(
        hnp.arrays(np.float16, shape, elements=f16_grads), min_size=1, max_size=10
    ).map(lambda gs: (shape, gs))),
    which=st.sampled_from(["adam", "adam_amsgrad", "adamw", "rmsprop", "rmsprop_centered",
                           "adagrad", "adagrad_lesson"]),
    state_dtype=st.sampled_from([None, "float16"]),
)
def test_float16_default_eps_never_makes_nan(data, which, state_dtype):
    shape, grads = data
    cls, kw = {
        "adam": (adaopt.Adam, {}),
        "adam_amsgrad": (adaopt.Adam, {"amsgrad": True}),
        "adamw": (adaopt.AdamW, {}),
        "rmsprop": (adaopt.RMSprop, {}),
        "rmsprop_centered": (adaopt.RMSprop, {"centered": True}),
        "adagrad": (adaopt.AdaGrad, {}),
        "adagrad_lesson": (adaopt.AdaGrad, {"conventions": "lesson"}),
    }[which]
    x = np.full(shape, 0.5, dtype=np.float16)
    opt = cls(x, state_dtype=state_dtype, **kw)
    # pure API alongside, on its own copy
    popt = cls(state_dtype=state_dtype, **kw)
    p = x.copy()
    pstate = popt.init(p)
    for g in grads:
        opt.step(g)
        p, pstate = popt.update(g, pstate, p)
        assert x.dtype == np.float16
        assert not np.isnan(x).any(), (which, state_dtype, g, x)
        assert not np.isnan(p).any()
        for buf in list(opt.state["param"].values()) + list(pstate["param"].values()):
            if isinstance(buf, np.ndarray):
                assert not np.isnan(buf).any()
                if state_dtype == "float16":
                    assert buf.dtype == np.float16
                else:
                    assert buf.dtype == np.float32
    np.testing.assert_array_equal(x, p)


@pytest.mark.parametrize("state_dtype", [None, "float16"])
@pytest.mark.parametrize("g", [1e-3, -1e-3, 1e-6, 0.0])
@pytest.mark.parametrize("kw", [{}, {"centered": True}, {"centered": True, "momentum": 0.9},
                                {"centered": True, "eps_in_sqrt": True}], ids=str)
def test_float16_rmsprop_small_constant_gradient_is_not_nan(kw, g, state_dtype):
    """A long run of one small gradient, the case a short random sequence rarely reaches.

    With a float16 state and ``centered=True``, ``square_avg`` (``0.01*g*g`` rounds to 0 for
    ``|g| = 1e-3``) falls below ``grad_avg**2``, so the centered variance goes negative and
    ``sqrt`` of it is NaN from step 19 on.
    """
    x = np.array([0.5, -0.5], dtype=np.float16)
    opt = adaopt.RMSprop(x, state_dtype=state_dtype, **kw)
    for t in range(1, 61):
        opt.step(np.full(2, g, dtype=np.float16))
        assert not np.isnan(x).any(), f"NaN parameter at step {t}: state {opt.state['param']}"


@pytest.mark.parametrize("cls", [adaopt.Adam, adaopt.RMSprop, adaopt.AdaGrad])
def test_float16_state_all_zero_gradient_is_not_nan(cls):
    """The lesson's pitfall 5 exactly: a zero gradient with a float16 state."""
    x = np.array([0.5, -0.25, 0.0], dtype=np.float16)
    opt = cls(x, state_dtype="float16")
    for _ in range(3):
        opt.step(np.zeros(3, dtype=np.float16))
    np.testing.assert_array_equal(x, np.array([0.5, -0.25, 0.0], dtype=np.float16))
