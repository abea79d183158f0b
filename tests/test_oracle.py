"""Oracle tests: one step from a hand-made state, against the textbook equations.

Every test fills the optimizer state by hand (``step`` and every buffer set to chosen
random values), takes ONE step through the public classes, both ways,

* pure: ``opt.update(grads, state, params)`` with the hand-made state dict, and
* stateful: ``opt.load_state_dict(...)`` with the same state, then ``opt.step(grads)``,

and compares the new parameter and the new state buffers with the update rebuilt
here, independently of :mod:`adaopt.rules`, from the equations in the lesson's form.
Everything runs in float64 and must agree to ``rtol=1e-12``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import adaopt

SHAPES = [(), (5,), (2, 3, 4)]
RTOL = 1e-12
STEP = 4  # the hand-made state has taken 4 steps, so the step under test is t = 5


# ---------------------------------------------------------------------- helpers


def rand(rng, shape, lo=None, hi=None):
    """A float64 array of ``shape`` (0-d included): normal, or uniform on [lo, hi)."""
    if lo is None:
        return np.asarray(rng.standard_normal(shape), dtype=np.float64)
    return np.asarray(rng.uniform(lo, hi, shape), dtype=np.float64)


def rng_for(shape, salt=0):
    return np.random.default_rng([len(shape), int(np.prod(shape)), salt])


def one_step(cls, kwargs, p, g, state):
    """Take one step both ways; return [(new_p, new_state), (new_p, new_state)].

    The inputs are never modified (checked here as well).
    """
    p0, g0, s0 = p.copy(), g.copy(), copy.deepcopy(state)

    # pure API, hand-made state dict
    opt = cls(**kwargs)
    pure_state = {"param": copy.deepcopy(state)}
    new_p, new_state = opt.update(g.copy(), pure_state, p.copy())
    assert set(new_state) == {"param"}
    pure = (np.asarray(new_p), new_state["param"])
    # the pure API left its inputs alone
    for k, v in state.items():
        np.testing.assert_array_equal(pure_state["param"][k], v)

    # stateful API, the same state loaded through load_state_dict
    x = p.copy()
    sopt = cls(x, **kwargs)
    sd = sopt.state_dict()
    sd["state"]["param"] = copy.deepcopy(state)
    sopt.load_state_dict(sd)
    sopt.step(g.copy())
    stateful = (x, sopt.state["param"])

    np.testing.assert_array_equal(p, p0)
    np.testing.assert_array_equal(g, g0)
    for k in s0:
        np.testing.assert_array_equal(state[k], s0[k])
    return [pure, stateful]


def check(results, expected_p, expected_buffers, step):
    """Both paths agree with the oracle: parameter, every buffer, and the step count."""
    for new_p, new_st in results:
        assert new_p.dtype == np.float64
        assert new_p.shape == expected_p.shape
        np.testing.assert_allclose(new_p, expected_p, rtol=RTOL, atol=0)
        assert new_st["step"] == step
        assert set(new_st) == {"step", *expected_buffers}
        for key, want in expected_buffers.items():
            assert new_st[key].dtype == np.float64, key
            np.testing.assert_allclose(new_st[key], want, rtol=RTOL, atol=0, err_msg=key)


# ---------------------------------------------------------------------- the textbook equations


def sgd_oracle(p, g, b, t, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
               maximize=False):
    """SGD in the lesson's form.

    g <- -g (maximize);  g <- g + wd * p
    b_1 = g;  b_t = mu * b_{t-1} + (1 - tau) * g
    d = g + mu * b (Nesterov)  or  d = b (heavy ball)  or  d = g (plain)
    p <- p - lr * d
    """
    if maximize:
        g = -g
    g = g + weight_decay * p
    if momentum == 0:
        return p - lr * g, {}
    b = g.copy() if t == 1 else momentum * b + (1 - dampening) * g
    d = g + momentum * b if nesterov else b
    return p - lr * d, {"momentum_buffer": b}


def adagrad_oracle(p, g, G, t, lr, eps, lr_decay=0.0, weight_decay=0.0, eps_in_sqrt=False,
                   maximize=False):
    """AdaGrad in the lesson's form.

    G <- G + g^2
    lr_t = lr / (1 + (t - 1) * lr_decay)
    p <- p - lr_t * g / (sqrt(G) + eps)     (torch)
    p <- p - lr_t * g / sqrt(G + eps)       (lesson, optax: eps inside the root)
    """
    if maximize:
        g = -g
    g = g + weight_decay * p
    G = G + g**2
    lr_t = lr / (1 + (t - 1) * lr_decay)
    denom = np.sqrt(G + eps) if eps_in_sqrt else np.sqrt(G) + eps
    return p - lr_t * g / denom, {"sum": G}


def rmsprop_oracle(p, g, state, lr, alpha, eps, momentum=0.0, centered=False, weight_decay=0.0,
                   eps_in_sqrt=False, maximize=False):
    """RMSprop in the lesson's form (rho = alpha).

    v <- rho * v + (1 - rho) * g^2
    centered: g_bar <- rho * g_bar + (1 - rho) * g;  s = v - g_bar^2   (else s = v)
    d = g / (sqrt(s) + eps)   or   g / sqrt(s + eps)
    momentum: b <- mu * b + d;  p <- p - lr * b      (else p <- p - lr * d)
    """
    if maximize:
        g = -g
    g = g + weight_decay * p
    out = {}
    v = alpha * state["square_avg"] + (1 - alpha) * g**2
    out["square_avg"] = v
    s = v
    if centered:
        g_bar = alpha * state["grad_avg"] + (1 - alpha) * g
        out["grad_avg"] = g_bar
        s = v - g_bar**2
    d = g / np.sqrt(s + eps) if eps_in_sqrt else g / (np.sqrt(s) + eps)
    if momentum != 0:
        b = momentum * state["momentum_buffer"] + d
        out["momentum_buffer"] = b
        return p - lr * b, out
    return p - lr * d, out


def adam_oracle(p, g, state, t, lr, betas, eps, weight_decay=0.0, amsgrad=False, maximize=False,
                bias_correction=True, wd_form=None):
    """Adam / AMSGrad / AdamW in the lesson's form.

    m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g^2
    amsgrad: v_max = max(v_max, v), used in place of v
    m_hat = m / (1 - b1^t);      v_hat = v / (1 - b2^t)     (no hats without bias correction)
    Adam (L2):      g <- g + wd * p first, then  p <- p - lr * m_hat / (sqrt(v_hat) + eps)
    AdamW "shrink": p <- p * (1 - lr * wd), then the Adam step (torch)
    AdamW "add":    p <- p - lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)   (lesson, optax)
    """
    b1, b2 = betas
    if maximize:
        g = -g
    if wd_form is None:
        g = g + weight_decay * p
    m = b1 * state["exp_avg"] + (1 - b1) * g
    v = b2 * state["exp_avg_sq"] + (1 - b2) * g**2
    out = {"exp_avg": m, "exp_avg_sq": v}
    v_used = v
    if amsgrad:
        v_used = np.maximum(state["max_exp_avg_sq"], v)
        out["max_exp_avg_sq"] = v_used
    if bias_correction:
        m_hat, v_hat = m / (1 - b1**t), v_used / (1 - b2**t)
    else:
        m_hat, v_hat = m, v_used
    adam_update = m_hat / (np.sqrt(v_hat) + eps)
    if wd_form == "shrink":
        return p * (1 - lr * weight_decay) - lr * adam_update, out
    if wd_form == "add":
        return p - lr * (adam_update + weight_decay * p), out
    return p - lr * adam_update, out


# ---------------------------------------------------------------------- SGD


SGD_CASES = {
    "plain": dict(lr=0.1),
    "plain_maximize": dict(lr=0.1, maximize=True),
    "plain_weight_decay": dict(lr=0.1, weight_decay=0.3),
    "momentum": dict(lr=0.1, momentum=0.9),
    "momentum_dampening": dict(lr=0.1, momentum=0.8, dampening=0.25),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "nesterov_weight_decay_maximize": dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.1,
                                           maximize=True),
    "momentum_dampening_weight_decay": dict(lr=0.2, momentum=0.5, dampening=0.5, weight_decay=0.05),
}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", SGD_CASES)
@pytest.mark.parametrize("step", [0, STEP], ids=["first_step", "later_step"])
def test_sgd(case, shape, step):
    kw = SGD_CASES[case]
    rng = rng_for(shape, 1)
    p, g = rand(rng, shape), rand(rng, shape)
    state = {"step": step}
    if kw.get("momentum", 0):
        # the first step must ignore whatever the buffer holds: b_1 = g, undamped
        state["momentum_buffer"] = rand(rng, shape)
    want_p, want_buf = sgd_oracle(p, g, state.get("momentum_buffer"), step + 1, **kw)
    check(one_step(adaopt.SGD, kw, p, g, state), want_p, want_buf, step + 1)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_sgd_momentum_first_step_from_init_is_the_gradient(shape):
    rng = rng_for(shape, 2)
    p, g = rand(rng, shape), rand(rng, shape)
    opt = adaopt.SGD(lr=0.1, momentum=0.9, dampening=0.5)
    state = opt.init(p)
    assert state["param"]["step"] == 0
    np.testing.assert_array_equal(state["param"]["momentum_buffer"], np.zeros(shape))
    new_p, new_state = opt.update(g, state, p)
    np.testing.assert_array_equal(new_state["param"]["momentum_buffer"], g)  # b_1 = g exactly
    np.testing.assert_allclose(new_p, p - 0.1 * g, rtol=RTOL, atol=0)
    # second step: b_2 = mu * b_1 + (1 - tau) * g_2
    g2 = rand(rng, shape)
    new_p2, new_state2 = opt.update(g2, new_state, new_p)
    b2 = 0.9 * g + (1 - 0.5) * g2
    np.testing.assert_allclose(new_state2["param"]["momentum_buffer"], b2, rtol=RTOL, atol=0)
    np.testing.assert_allclose(new_p2, new_p - 0.1 * b2, rtol=RTOL, atol=0)


# ---------------------------------------------------------------------- AdaGrad


ADAGRAD_CASES = {
    # explicit eps values are large enough that inside vs outside the root differ by far more
    # than rtol, so the oracle tells the two placements apart
    "defaults": dict(lr=0.1),
    "lr_decay": dict(lr=0.3, lr_decay=0.2, eps=1e-3),
    "weight_decay": dict(lr=0.1, weight_decay=0.4, eps=1e-3),
    "maximize": dict(lr=0.1, maximize=True, eps=1e-3),
    "eps_outside": dict(lr=0.1, eps=0.05),
    "eps_in_sqrt": dict(lr=0.1, eps=0.05, eps_in_sqrt=True),
    "everything": dict(lr=0.2, lr_decay=0.1, weight_decay=0.2, eps=0.01, eps_in_sqrt=True,
                       maximize=True),
    "initial_accumulator_value": dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-3),
}


def _adagrad_expected_kwargs(kw, conventions="torch"):
    defaults = {"torch": (1e-10, False), "optax": (1e-7, True), "lesson": (1e-8, True)}[conventions]
    out = {k: v for k, v in kw.items() if k != "initial_accumulator_value"}
    out.setdefault("eps", defaults[0])
    out.setdefault("eps_in_sqrt", defaults[1])
    return out


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", ADAGRAD_CASES)
def test_adagrad(case, shape):
    kw = ADAGRAD_CASES[case]
    rng = rng_for(shape, 3)
    p, g = rand(rng, shape), rand(rng, shape)
    state = {"step": STEP, "sum": rand(rng, shape, 0.1, 3.0)}
    want_p, want_buf = adagrad_oracle(p, g, state["sum"], STEP + 1, **_adagrad_expected_kwargs(kw))
    check(one_step(adaopt.AdaGrad, kw, p, g, state), want_p, want_buf, STEP + 1)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("iav", [0.0, 0.5, 2.0])
def test_adagrad_initial_accumulator_value_first_step(shape, iav):
    rng = rng_for(shape, 4)
    p, g = rand(rng, shape), rand(rng, shape)
    opt = adaopt.AdaGrad(lr=0.1, initial_accumulator_value=iav, lr_decay=0.5, eps=1e-3)
    state = opt.init(p)
    np.testing.assert_array_equal(state["param"]["sum"], np.full(shape, iav))
    assert state["param"]["step"] == 0
    want_p, want_buf = adagrad_oracle(p, g, np.full(shape, iav), 1, lr=0.1, eps=1e-3, lr_decay=0.5)
    new_p, new_state = opt.update(g, state, p)
    check([(np.asarray(new_p), new_state["param"])], want_p, want_buf, 1)
    # the stateful API starts from the same accumulator
    x = p.copy()
    sopt = adaopt.AdaGrad(x, lr=0.1, initial_accumulator_value=iav, lr_decay=0.5, eps=1e-3)
    sopt.step(g)
    check([(x, sopt.state["param"])], want_p, want_buf, 1)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("step", [0, 1, 9])
def test_adagrad_lr_decay_uses_t_minus_one(shape, step):
    rng = rng_for(shape, 5)
    p, g = rand(rng, shape), rand(rng, shape)
    state = {"step": step, "sum": rand(rng, shape, 0.1, 3.0)}
    kw = dict(lr=1.0, lr_decay=0.25, eps=0.0)
    want_p, want_buf = adagrad_oracle(p, g, state["sum"], step + 1, **kw)
    # and spelled out: lr_t = 1 / (1 + step * 0.25)
    G = state["sum"] + g * g
    np.testing.assert_allclose(want_p, p - (1.0 / (1 + step * 0.25)) * g / np.sqrt(G), rtol=RTOL)
    check(one_step(adaopt.AdaGrad, kw, p, g, state), want_p, want_buf, step + 1)


# ---------------------------------------------------------------------- RMSprop


RMSPROP_CASES = {
    "defaults": dict(lr=0.01),
    "plain": dict(lr=0.05, alpha=0.9, eps=1e-3),
    "centered": dict(lr=0.05, alpha=0.9, eps=1e-3, centered=True),
    "momentum": dict(lr=0.05, alpha=0.95, eps=1e-3, momentum=0.9),
    "eps_in_sqrt": dict(lr=0.05, alpha=0.9, eps=0.05, eps_in_sqrt=True),
    "eps_outside": dict(lr=0.05, alpha=0.9, eps=0.05),
    "weight_decay": dict(lr=0.05, alpha=0.9, eps=1e-3, weight_decay=0.3),
    "maximize": dict(lr=0.05, alpha=0.9, eps=1e-3, maximize=True),
    "centered_momentum_eps_in_sqrt": dict(lr=0.02, alpha=0.8, eps=0.01, centered=True, momentum=0.5,
                                          eps_in_sqrt=True),
    "everything": dict(lr=0.02, alpha=0.7, eps=0.01, centered=True, momentum=0.6, weight_decay=0.1,
                       maximize=True),
}


def _rmsprop_state(rng, shape, kw):
    state = {"step": STEP}
    if kw.get("centered"):
        g_bar = rand(rng, shape)
        state["grad_avg"] = g_bar
        state["square_avg"] = g_bar**2 + rand(rng, shape, 0.5, 2.0)  # a valid variance, > 0
    else:
        state["square_avg"] = rand(rng, shape, 0.1, 3.0)
    if kw.get("momentum", 0):
        state["momentum_buffer"] = rand(rng, shape)
    return state


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", RMSPROP_CASES)
def test_rmsprop(case, shape):
    kw = RMSPROP_CASES[case]
    rng = rng_for(shape, 6)
    p, g = rand(rng, shape), rand(rng, shape)
    state = _rmsprop_state(rng, shape, kw)
    oracle_kw = {"alpha": 0.99, "eps": 1e-8, **kw}  # torch's defaults
    want_p, want_buf = rmsprop_oracle(p, g, state, **oracle_kw)
    check(one_step(adaopt.RMSprop, kw, p, g, state), want_p, want_buf, STEP + 1)


# ---------------------------------------------------------------------- Adam and AdamW


ADAM_CASES = {
    "defaults": dict(),
    "plain": dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3),
    "no_bias_correction": dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3, bias_correction=False),
    "amsgrad": dict(lr=0.01, betas=(0.85, 0.9), eps=1e-3, amsgrad=True),
    "l2_weight_decay": dict(lr=0.01, betas=(0.9, 0.99), eps=1e-3, weight_decay=0.2),
    "maximize": dict(lr=0.01, betas=(0.9, 0.99), eps=1e-3, maximize=True),
    "amsgrad_wd_maximize_no_bc": dict(lr=0.02, betas=(0.5, 0.6), eps=1e-2, amsgrad=True,
                                      weight_decay=0.1, maximize=True, bias_correction=False),
}


def _adam_state(rng, shape, amsgrad):
    state = {"step": STEP, "exp_avg": rand(rng, shape), "exp_avg_sq": rand(rng, shape, 0.1, 3.0)}
    if amsgrad:
        # around exp_avg_sq: some coordinates keep the old max, some take the new v
        state["max_exp_avg_sq"] = state["exp_avg_sq"] * rand(rng, shape, 0.5, 1.5)
    return state


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", ADAM_CASES)
def test_adam(case, shape):
    kw = ADAM_CASES[case]
    rng = rng_for(shape, 7)
    p, g = rand(rng, shape), rand(rng, shape)
    state = _adam_state(rng, shape, kw.get("amsgrad", False))
    oracle_kw = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, **kw}
    want_p, want_buf = adam_oracle(p, g, state, STEP + 1, **oracle_kw)
    check(one_step(adaopt.Adam, kw, p, g, state), want_p, want_buf, STEP + 1)


def test_adam_amsgrad_state_exercises_both_branches():
    """The amsgrad oracle cases really have coordinates on both sides of the max."""
    rng = rng_for((2, 3, 4), 7)
    p, g = rand(rng, (2, 3, 4)), rand(rng, (2, 3, 4))
    st = _adam_state(rng, (2, 3, 4), True)
    v = 0.9 * st["exp_avg_sq"] + 0.1 * g**2
    assert (st["max_exp_avg_sq"] > v).any() and (st["max_exp_avg_sq"] < v).any()


ADAMW_CASES = {
    "shrink_default": dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.3),
    "shrink_explicit": dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.3, wd_form="shrink"),
    "add": dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.3, wd_form="add"),
    "shrink_amsgrad_maximize": dict(lr=0.05, betas=(0.7, 0.9), eps=1e-2, weight_decay=0.5,
                                    amsgrad=True, maximize=True),
    "add_amsgrad_no_bc": dict(lr=0.05, betas=(0.7, 0.9), eps=1e-2, weight_decay=0.5, amsgrad=True,
                              bias_correction=False, wd_form="add"),
    "torch_defaults": dict(),
}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", ADAMW_CASES)
def test_adamw(case, shape):
    kw = ADAMW_CASES[case]
    rng = rng_for(shape, 8)
    p, g = rand(rng, shape), rand(rng, shape)
    state = _adam_state(rng, shape, kw.get("amsgrad", False))
    oracle_kw = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2,
                 "wd_form": "shrink", **kw}
    want_p, want_buf = adam_oracle(p, g, state, STEP + 1, **oracle_kw)
    check(one_step(adaopt.AdamW, kw, p, g, state), want_p, want_buf, STEP + 1)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_adamw_shrink_and_add_differ_only_by_rounding(shape):
    """The two forms are equal in exact arithmetic; each matches its own oracle above."""
    rng = rng_for(shape, 9)
    p, g = rand(rng, shape), rand(rng, shape)
    state = _adam_state(rng, shape, False)
    kw = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.3)
    a = one_step(adaopt.AdamW, {**kw, "wd_form": "shrink"}, p, g, state)[0][0]
    b = one_step(adaopt.AdamW, {**kw, "wd_form": "add"}, p, g, state)[0][0]
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_adam_with_decoupled_weight_decay_is_adamw(shape):
    rng = rng_for(shape, 10)
    p, g = rand(rng, shape), rand(rng, shape)
    state = _adam_state(rng, shape, False)
    kw = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.3)
    want_p, want_buf = adam_oracle(p, g, state, STEP + 1, **kw, wd_form="shrink")
    check(one_step(adaopt.Adam, {**kw, "decoupled_weight_decay": True}, p, g, state),
          want_p, want_buf, STEP + 1)


# ---------------------------------------------------------------------- conventions presets


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("from_init", [True, False], ids=["from_init", "hand_state"])
def test_optax_adagrad(shape, from_init):
    """optax: eps = 1e-7 inside the root, accumulator starts at 0.1."""
    rng = rng_for(shape, 11)
    p, g = rand(rng, shape), rand(rng, shape)
    opt = adaopt.AdaGrad(lr=0.3, conventions="optax")
    assert opt.defaults["eps_in_sqrt"] is True
    assert opt.defaults["initial_accumulator_value"] == 0.1
    init = opt.init(p)["param"]
    np.testing.assert_array_equal(init["sum"], np.full(shape, 0.1))
    state = dict(init) if from_init else {"step": STEP, "sum": rand(rng, shape, 0.1, 3.0)}
    t = state["step"] + 1
    want_p, want_buf = adagrad_oracle(p, g, state["sum"], t, lr=0.3, eps=1e-7, eps_in_sqrt=True)
    check(one_step(adaopt.AdaGrad, dict(lr=0.3, conventions="optax"), p, g, state),
          want_p, want_buf, t)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lesson_adagrad(shape):
    """lesson: eps = 1e-8 inside the root, accumulator starts at 0."""
    rng = rng_for(shape, 12)
    p, g = rand(rng, shape), rand(rng, shape)
    state = {"step": STEP, "sum": rand(rng, shape, 0.1, 3.0)}
    want_p, want_buf = adagrad_oracle(p, g, state["sum"], STEP + 1, lr=0.3, eps=1e-8, eps_in_sqrt=True)
    check(one_step(adaopt.AdaGrad, dict(lr=0.3, conventions="lesson"), p, g, state),
          want_p, want_buf, STEP + 1)
    np.testing.assert_array_equal(adaopt.AdaGrad(conventions="lesson").init(p)["param"]["sum"],
                                  np.zeros(shape))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("conventions", ["lesson", "optax"])
@pytest.mark.parametrize("centered", [False, True])
def test_lesson_and_optax_rmsprop(shape, conventions, centered):
    """lesson and optax: alpha = 0.9, eps = 1e-8 inside the root."""
    rng = rng_for(shape, 13)
    p, g = rand(rng, shape), rand(rng, shape)
    kw = dict(lr=0.05, centered=centered, conventions=conventions)
    state = _rmsprop_state(rng, shape, kw)
    opt = adaopt.RMSprop(**kw)
    assert opt.defaults["alpha"] == 0.9 and opt.defaults["eps_in_sqrt"] is True
    want_p, want_buf = rmsprop_oracle(p, g, state, lr=0.05, alpha=0.9, eps=1e-8, centered=centered,
                                      eps_in_sqrt=True)
    check(one_step(adaopt.RMSprop, kw, p, g, state), want_p, want_buf, STEP + 1)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("conventions, wd", [("lesson", 1e-2), ("optax", 1e-4)])
def test_lesson_and_optax_adamw_add_the_decay(shape, conventions, wd):
    rng = rng_for(shape, 14)
    p, g = rand(rng, shape), rand(rng, shape)
    state = _adam_state(rng, shape, False)
    kw = dict(lr=0.05, conventions=conventions)
    want_p, want_buf = adam_oracle(p, g, state, STEP + 1, lr=0.05, betas=(0.9, 0.999), eps=1e-8,
                                   weight_decay=wd, wd_form="add")
    check(one_step(adaopt.AdamW, kw, p, g, state), want_p, want_buf, STEP + 1)


# ---------------------------------------------------------------------- the oracles themselves


def test_oracles_reproduce_the_lessons_example1():
    """A sanity check of the test's own AdaGrad oracle: f(x) = 10 x^2 from x = 5, lr = 0.5."""
    x, G = np.array(5.0), np.array(0.0)
    x1, buf = adagrad_oracle(x, 20 * x, G, 1, lr=0.5, eps=0.0, eps_in_sqrt=True)
    assert float(x1) == 4.5 and float(buf["sum"]) == 10000.0


def test_adam_oracle_first_step_is_lr_times_sign():
    g = np.array([3.0, -0.5])
    st = {"exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(2)}
    p1, _ = adam_oracle(np.zeros(2), g, st, 1, lr=0.1, betas=(0.9, 0.999), eps=0.0)
    np.testing.assert_allclose(p1, -0.1 * np.sign(g), rtol=1e-14)
    assert math.isclose(1 - 0.9**1, 0.1)
