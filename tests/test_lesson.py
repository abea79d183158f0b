"""The lesson's worked examples and practice answers, to their printed digits.

Where the lesson rounds intermediate values or estimates, the test asserts the
exact value and the comment says how it relates to the printed one.
"""

import math

import numpy as np
import pytest

import adaopt
from adaopt import rules


def quad(a):
    """f(x) = a x^2 and its gradient."""
    return lambda x: (a * x**2, 2 * a * x)


# ---------------------------------------------------------------- Example 1: AdaGrad step by step


def test_example1_adagrad_three_steps():
    opt = adaopt.AdaGrad(lr=0.5, eps=0.0, conventions="lesson")
    tr = adaopt.minimize(quad(10.0), 5.0, opt, steps=3)
    G = tr.state["G"]
    assert tr.grad[0] == 100 and G[0] == 10000 and tr.x[1] == 4.5
    assert tr.grad[1] == 90 and G[1] == 18100
    # The lesson prints x2 = 4.165 (it rounds 0.33448 to 0.335); the exact x2 is 4.16552.
    assert tr.x[2] == pytest.approx(4.5 - 0.5 * 90 / math.sqrt(18100), rel=1e-15)
    assert abs(tr.x[2] - 4.165) < 1e-3
    # The lesson's G3 = 25039 uses the rounded gradient 83.3; exact: 18100 + 83.3104^2 = 25040.6.
    assert G[2] == pytest.approx(25039, rel=1e-4)
    assert round(float(tr.x[3]), 3) == 3.902
    # "Effective learning rate shrinks ... to 0.0032 at step 3": 0.5 / sqrt(G3) = 0.0031597.
    assert round(float(tr.eff_lr[2]), 4) == 0.0032
    assert tr.eff_lr[2] == pytest.approx(0.5 / math.sqrt(G[2]), rel=1e-15)


# ---------------------------------------------------------------- Example 2: AdaGrad vs RMSprop, 1000 steps


def test_example2_adagrad_dies():
    tr = adaopt.minimize(quad(1.0), 10.0, "adagrad", 1000, lr=0.1, conventions="lesson")
    assert f"{float(tr.x[-1]):.4g}" == "4.625"
    # The lesson estimates 0.1/sqrt(400000) = 1.6e-4 by assuming |g| = 20 throughout; the exact
    # accumulator is smaller because x (and g) shrink, so the exact effective lr is 2.46e-4.
    assert f"{float(tr.eff_lr[-1]):.3g}" == "0.000246"
    # ...and "the parameter barely moves": step 1000 is under 3% of step 1 (0.1), while x is
    # still 4.6 away from the minimum.
    assert abs(tr.x[-1] - tr.x[-2]) < 0.03 * abs(tr.x[1] - tr.x[0])


def test_example2_rmsprop_keeps_learning():
    tr = adaopt.minimize(quad(1.0), 10.0, "rmsprop", 1000, lr=0.1, alpha=0.9, conventions="lesson")
    assert abs(tr.x[-1]) <= 0.05
    # lr_eff stays about 0.1/|recent gradient|, so steps keep size ~lr instead of dying.
    assert tr.eff_lr[-1] > 0.5


# ---------------------------------------------------------------- Example 3: bias correction


def test_example3_bias_correction():
    raw = adaopt.minimize(quad(1.0), 1.0, "adam", 1, lr=0.1, bias_correction=False)
    assert raw.grad[0] == 2
    assert raw.state["m"][0] == pytest.approx(0.2, rel=1e-15)  # not 2
    assert raw.state["m_hat"][0] == pytest.approx(0.2, rel=1e-15)
    fixed = adaopt.minimize(quad(1.0), 1.0, "adam", 1, lr=0.1)
    assert fixed.state["m_hat"][0] == pytest.approx(2.0, rel=1e-15)
    # The first corrected step has size lr: m-hat/sqrt(v-hat) = g/|g|.
    assert abs(fixed.x[1] - fixed.x[0]) == pytest.approx(0.1, rel=1e-7)
    # The correction factor 1/(1-beta1^k): 10 at k=1, -> 1 for large k.
    assert adaopt.bias_correction_factor(0.9, 1) == pytest.approx(10)
    assert adaopt.bias_correction_factor(0.9, 200) == pytest.approx(1, abs=1e-9)


def test_example3_uncorrected_first_step_is_too_large_not_small():
    """The lesson's claim is about m alone; with v uncorrected too, step 1 is 3.16x lr."""
    raw = adaopt.minimize(quad(1.0), 1.0, "adam", 1, lr=0.1, bias_correction=False)
    assert abs(raw.x[1] - raw.x[0]) == pytest.approx(0.1 * 0.1 / math.sqrt(0.001), rel=1e-6)


# ---------------------------------------------------------------- Practice problems


def test_practice1_adam_on_alternating_gradient():
    """+g, -g, ...: Adam settles to steps of lr (1-b1)/(1+b1) = 0.0526 lr (the lesson: "about 0")."""
    lr, b1, g = 0.01, 0.9, 3.0
    signs = iter(np.tile([1.0, -1.0], 5001))
    tr = adaopt.minimize(lambda x: (0.0, g * next(signs)), 0.0, "adam", 10000, lr=lr, betas=(b1, 0.999))
    steps = np.abs(np.diff(tr.x[-100:]))
    expected = lr * (1 - b1) / (1 + b1)
    assert expected == pytest.approx(0.0526 * lr, rel=1e-3)
    np.testing.assert_allclose(steps, expected, rtol=1e-3)
    # ...and the momentum amplitude is g(1-b1)/(1+b1) while sqrt(v-hat) -> |g|.
    np.testing.assert_allclose(np.abs(tr.state["m"][-10:]), g * (1 - b1) / (1 + b1), rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(tr.state["v_hat"][-1]), g, rtol=1e-3)


def _recovery_steps(beta2, warmup=20000, drop=100.0, lr=1e-3):
    """How long Adam's step stays below lr/2 after the gradient scale drops 100x.

    Runs the Adam rule on plain numbers: the same function the optimizers run on arrays.
    """
    hp = dict(adaopt.registry.ADAM.defaults_for("torch"), betas=(0.9, beta2), lr=lr, eps=1e-8)
    state, p, fell = {"exp_avg": 0.0, "exp_avg_sq": 0.0}, 0.0, None
    for t in range(1, 10**6):
        g = 1.0 if t <= warmup else 1.0 / drop
        new_p, state = rules.adam.update(p, g, state, hp, rules.adam.scalars(t, hp))
        small = abs(new_p - p) < lr / 2
        if t > warmup and small and fell is None:
            fell = t
        if fell is not None and not small:
            return t - fell
        p = new_p
    raise AssertionError("never recovered")


def test_practice2_beta2_too_close_to_one_stalls_ten_times_longer():
    fast, slow = _recovery_steps(0.999), _recovery_steps(0.9999)
    ratio = slow / fast
    # ln(0.999)/ln(0.9999) = 9.9955: the slow memory keeps the step small ~10x longer.
    assert 9.0 <= ratio <= 11.0, (fast, slow, ratio)
    assert fast > 1000  # a thousand steps of tiny updates even with the default beta2


def test_practice3_adagrad_effective_lr():
    signs = iter(np.tile([1.0, -1.0], 5001))
    tr = adaopt.minimize(lambda x: (0.0, next(signs)), 0.0, "adagrad", 10000, lr=0.1, eps=1e-8,
                         conventions="lesson")
    assert tr.state["G"][99] == 100
    assert tr.eff_lr[99] == pytest.approx(0.01, rel=1e-9)
    assert tr.eff_lr[9999] == pytest.approx(0.001, rel=1e-9)


def test_practice4_memory_of_a_moving_average():
    assert round(adaopt.half_life(0.9), 2) == 6.58
    assert round(adaopt.half_life(0.99), 2) == 68.97
    assert adaopt.ema_window(0.9) == pytest.approx(10)
    assert adaopt.ema_window(0.99) == pytest.approx(100)
    # The half-life is where a past gradient's weight beta^k falls to one half.
    assert 0.9 ** adaopt.half_life(0.9) == pytest.approx(0.5)


@pytest.mark.parametrize("conventions", ["lesson", "torch"])
def test_practice5_adamw_is_the_printed_formula(conventions):
    """x_{k+1} = x_k - lr (m-hat/(sqrt(v-hat) + eps) + lambda x_k), rebuilt independently."""
    rng = np.random.default_rng(0)
    lr, lam, b1, b2, eps = 0.05, 0.1, 0.9, 0.999, 1e-8
    x = rng.normal(size=4)
    opt = adaopt.AdamW([x], lr=lr, weight_decay=lam, betas=(b1, b2), eps=eps, conventions=conventions)
    ref, m, v = x.copy(), np.zeros(4), np.zeros(4)
    for k in range(1, 21):
        g = rng.normal(size=4)
        opt.step([g.copy()])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**k), v / (1 - b2**k)
        ref = ref - lr * (m_hat / (np.sqrt(v_hat) + eps) + lam * ref)
        # equal up to rounding: adaopt divides sqrt(v) by sqrt(1-b2^k) (torch's order)
        np.testing.assert_allclose(x, ref, rtol=1e-13, atol=1e-16)


# ---------------------------------------------------------------- Pitfall 5: epsilon and precision


def test_pitfall5_eps_for_float16():
    assert np.float16(1e-8) == 0  # the lesson's "dominates the denominator" is worse: it vanishes
    assert adaopt.default_eps("float16") == 1e-4
    assert np.float16(adaopt.default_eps("float16")) != 0
    assert adaopt.default_eps("float32") == 1e-8
    h = np.zeros(3, np.float16)
    opt = adaopt.Adam([h], lr=1e-3, state_dtype="float16")  # eps chosen for float16
    for _ in range(5):
        opt.step([np.array([0.0, 1e-6, 1.0], np.float16)])
    assert np.isfinite(h).all()
