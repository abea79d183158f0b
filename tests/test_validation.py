"""Invalid hyperparameters, mismatched inputs and corrupted checkpoints.

Every rejection must (1) raise ValueError or TypeError (CheckpointError, a ValueError,
for checkpoints) with a message that names the argument and the value, and (2) leave
the parameters and the optimizer state exactly as they were: nothing is half-applied.
"""

from __future__ import annotations

import copy
import json
import math
import os
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

import adaopt
from adaopt import CheckpointError

ALL = [adaopt.SGD, adaopt.AdaGrad, adaopt.RMSprop, adaopt.Adam, adaopt.AdamW]
OPTIONS = {  # some options on, so every class keeps several state buffers
    adaopt.SGD: dict(lr=0.1, momentum=0.9, dampening=0.1),
    adaopt.AdaGrad: dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1),
    adaopt.RMSprop: dict(lr=0.01, centered=True, momentum=0.5),
    adaopt.Adam: dict(lr=0.01, amsgrad=True, weight_decay=0.01),
    adaopt.AdamW: dict(lr=0.01, amsgrad=True),
}


# ---------------------------------------------------------------------- helpers


def snapshot(opt, params):
    """Copies of the parameters and of everything the optimizer holds."""
    return [np.array(p, copy=True) for p in params], copy.deepcopy(opt.state_dict())


def assert_unchanged(opt, params, snap):
    before_params, before = snap
    for p, q in zip(params, before_params):
        assert p.dtype == q.dtype
        assert np.array_equal(p, q, equal_nan=True), "a parameter changed"
    after = opt.state_dict()
    assert after["optimizer"] == before["optimizer"]
    assert after["param_groups"] == before["param_groups"], "the param groups changed"
    assert_same_state(after["state"], before["state"])


def assert_same_state(a, b):
    assert set(a) == set(b), f"state keys changed: {sorted(b)} -> {sorted(a)}"
    for name in a:
        assert set(a[name]) == set(b[name]), name
        for k, v in a[name].items():
            if k == "step":
                assert v == b[name][k], (name, k)
            else:
                assert v.dtype == b[name][k].dtype, (name, k)
                assert np.array_equal(v, b[name][k]), (name, k)


def two_params(dtype=np.float64):
    return np.linspace(-1, 1, 3).astype(dtype), np.arange(4.0).reshape(2, 2).astype(dtype)


def warmed_up(cls, params, steps=2, **kw):
    """A stateful optimizer over ``params`` (a list) that has taken a few steps."""
    opt = cls(params, **{**OPTIONS[cls], **kw})
    for i in range(steps):
        opt.step([np.full_like(p, 0.1 * (i + 1)) + p for p in params])
    return opt


def same_next_step(opt, params, cls, steps=2, **kw):
    """After a rejected call, the next valid step equals that of an optimizer never bothered."""
    ref_params = list(two_params(params[0].dtype))
    ref = warmed_up(cls, ref_params, steps, **kw)
    grads = [np.full_like(p, -0.3) for p in params]
    opt.step(grads)
    ref.step([g.copy() for g in grads])
    for p, q in zip(params, ref_params):
        assert np.array_equal(p, q)
    assert_same_state(opt.state, ref.state)


# ---------------------------------------------------------------------- invalid hyperparameters


INVALID = [
    # (class, kwargs, exception, fragments the message must contain)
    (adaopt.Adam, dict(lr=-1), ValueError, ["lr=-1"]),
    (adaopt.SGD, dict(lr=-1), ValueError, ["lr=-1"]),
    (adaopt.Adam, dict(lr=float("nan")), ValueError, ["lr=nan"]),
    (adaopt.RMSprop, dict(lr=float("inf")), ValueError, ["lr=inf"]),
    (adaopt.Adam, dict(betas=(1.0, 0.9)), ValueError, ["betas=(1.0, 0.9)"]),
    (adaopt.Adam, dict(betas=(0.9, 1.0)), ValueError, ["betas=(0.9, 1.0)"]),
    (adaopt.AdamW, dict(betas=(0.9,)), ValueError, ["betas=(0.9,)"]),
    (adaopt.Adam, dict(betas=(-0.1, 0.9)), ValueError, ["betas=(-0.1, 0.9)"]),
    (adaopt.Adam, dict(eps=-1), ValueError, ["eps=-1"]),
    (adaopt.AdaGrad, dict(eps=-1), ValueError, ["eps=-1"]),
    (adaopt.RMSprop, dict(eps=float("nan")), ValueError, ["eps=nan"]),
    (adaopt.SGD, dict(momentum=-0.1), ValueError, ["momentum=-0.1"]),
    (adaopt.SGD, dict(momentum=1.0), ValueError, ["momentum=1.0"]),
    (adaopt.RMSprop, dict(momentum=-0.1), ValueError, ["momentum=-0.1"]),
    (adaopt.RMSprop, dict(momentum=1.0), ValueError, ["momentum=1.0"]),
    (adaopt.SGD, dict(momentum=0.9, dampening=2), ValueError, ["dampening=2"]),
    (adaopt.SGD, dict(weight_decay=-1), ValueError, ["weight_decay=-1"]),
    (adaopt.AdaGrad, dict(weight_decay=-1), ValueError, ["weight_decay=-1"]),
    (adaopt.RMSprop, dict(weight_decay=-1), ValueError, ["weight_decay=-1"]),
    (adaopt.Adam, dict(weight_decay=-1), ValueError, ["weight_decay=-1"]),
    (adaopt.AdamW, dict(weight_decay=-1), ValueError, ["weight_decay=-1"]),
    (adaopt.AdaGrad, dict(lr_decay=-1), ValueError, ["lr_decay=-1"]),
    (adaopt.AdaGrad, dict(initial_accumulator_value=-1), ValueError, ["initial_accumulator_value=-1"]),
    (adaopt.RMSprop, dict(alpha=1.5), ValueError, ["alpha=1.5"]),
    (adaopt.RMSprop, dict(alpha=1.0), ValueError, ["alpha=1.0"]),
    (adaopt.SGD, dict(nesterov=True), ValueError, ["nesterov=True", "momentum=0"]),
    (adaopt.SGD, dict(nesterov=True, momentum=0.0), ValueError, ["nesterov=True", "momentum=0"]),
    (adaopt.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError,
     ["nesterov=True", "dampening=0.1"]),
    (adaopt.Adam, dict(conventions="keras"), ValueError, ["conventions", "'keras'"]),
    (adaopt.SGD, dict(conventions="keras"), ValueError, ["conventions", "'keras'"]),
    (adaopt.Adam, dict(state_dtype="int4"), ValueError, ["state_dtype", "'int4'"]),
    (adaopt.RMSprop, dict(state_dtype="float128"), ValueError, ["state_dtype", "'float128'"]),
    (adaopt.Adam, dict(amsgrad="yes"), ValueError, ["amsgrad", "'yes'"]),
    (adaopt.RMSprop, dict(centered=1), ValueError, ["centered=1"]),
    (adaopt.AdaGrad, dict(eps_in_sqrt="no"), ValueError, ["eps_in_sqrt", "'no'"]),
    (adaopt.AdamW, dict(wd_form="multiply"), ValueError, ["wd_form", "'multiply'"]),
    # numbers a float cannot hold, and things that are not real numbers: the same ValueError
    # naming the argument (10**400 used to escape as OverflowError from math.isfinite)
    (adaopt.Adam, dict(lr=10**400), ValueError, ["lr=1000", "...", "401 digits", "finite number"]),
    (adaopt.SGD, dict(lr=-10**400), ValueError, ["lr=-1000", "..."]),
    (adaopt.Adam, dict(lr=10**5000), ValueError, ["lr=", "digits"]),  # beyond int->str's limit
    (adaopt.Adam, dict(betas=(10**400, 0.9)), ValueError, ["betas=(1000", "digits), 0.9)"]),
    (adaopt.Adam, dict(betas=(0.9, 10**400)), ValueError, ["betas=(0.9, 1000"]),
    (adaopt.Adam, dict(eps=10**400), ValueError, ["eps=1000"]),
    (adaopt.AdaGrad, dict(eps=10**400), ValueError, ["eps=1000"]),
    (adaopt.Adam, dict(weight_decay=10**400), ValueError, ["weight_decay=1000"]),
    (adaopt.SGD, dict(weight_decay=10**400), ValueError, ["weight_decay=1000"]),
    (adaopt.SGD, dict(momentum=10**400), ValueError, ["momentum=1000"]),
    (adaopt.RMSprop, dict(momentum=10**400), ValueError, ["momentum=1000"]),
    (adaopt.SGD, dict(momentum=0.5, dampening=10**400), ValueError, ["dampening=1000"]),
    (adaopt.RMSprop, dict(alpha=10**400), ValueError, ["alpha=1000"]),
    (adaopt.AdaGrad, dict(lr_decay=10**400), ValueError, ["lr_decay=1000"]),
    (adaopt.AdaGrad, dict(initial_accumulator_value=10**400), ValueError,
     ["initial_accumulator_value=1000"]),
    (adaopt.Adam, dict(lr=Fraction(10**400)), ValueError, ["lr=Fraction("]),
    (adaopt.Adam, dict(lr=np.float32("nan")), ValueError, ["lr=", "nan"]),
    (adaopt.Adam, dict(lr=np.float64("inf")), ValueError, ["lr=", "inf"]),
    (adaopt.SGD, dict(lr=np.int64(-1)), ValueError, ["lr=", "-1"]),
    (adaopt.Adam, dict(betas=(np.float32("nan"), 0.9)), ValueError, ["betas=", "nan"]),
    (adaopt.Adam, dict(lr=Decimal("NaN")), ValueError, ["lr=Decimal('NaN')"]),
    (adaopt.Adam, dict(lr=Decimal("sNaN")), ValueError, ["lr=Decimal('sNaN')"]),
    (adaopt.Adam, dict(lr=Decimal("1e400")), ValueError, ["lr=Decimal('1E+400')"]),
    (adaopt.Adam, dict(lr=Decimal("-0.1")), ValueError, ["lr=Decimal('-0.1')"]),
    (adaopt.Adam, dict(lr=1 + 2j), ValueError, ["lr=(1+2j)"]),
    (adaopt.Adam, dict(lr=0.1 + 0j), ValueError, ["lr=(0.1+0j)"]),
    (adaopt.SGD, dict(momentum=np.complex128(0.5)), ValueError, ["momentum=", "0.5"]),
    (adaopt.Adam, dict(eps=1j), ValueError, ["eps=1j"]),
    (adaopt.Adam, dict(lr="0.1"), ValueError, ["lr='0.1'"]),
    (adaopt.SGD, dict(momentum="0.9"), ValueError, ["momentum='0.9'"]),
    (adaopt.Adam, dict(lr="x" * 10_000), ValueError, ["lr='xxx", "..."]),  # shortened
    (adaopt.Adam, dict(betas=(0.9, None)), ValueError, ["betas=(0.9, None)"]),
    (adaopt.Adam, dict(betas=(0.9, "0.99")), ValueError, ["betas=(0.9, '0.99')"]),
    (adaopt.Adam, dict(betas=(0.9, 0.99 + 0j)), ValueError, ["betas=(0.9, (0.99+0j))"]),
    (adaopt.Adam, dict(betas="ab"), ValueError, ["betas='ab'"]),
    (adaopt.Adam, dict(betas=np.array([0.9, 0.99])), ValueError, ["betas="]),
    # a rule whose test itself raises (an array compared to 'shrink') still names the argument
    (adaopt.AdamW, dict(wd_form=np.array(["add", "add"])), ValueError, ["wd_form="]),
    (adaopt.Adam, dict(amsgrad=np.array([True, False])), ValueError, ["amsgrad="]),
    # an unknown keyword is Python's TypeError, which names the argument
    (adaopt.Adam, dict(foo=1), TypeError, ["foo"]),
    (adaopt.SGD, dict(betas=(0.9, 0.99)), TypeError, ["betas"]),
    (adaopt.AdaGrad, dict(momentum=0.9), TypeError, ["momentum"]),
]


def _short(v):
    try:
        r = repr(v)
    except ValueError:  # an int beyond int->str's digit limit
        r = f"int{v.bit_length()}bits"
    return r if len(r) <= 40 else r[:20] + "..."


def _id(case):
    cls, kw, _, _ = case
    return f"{cls.__name__}-" + ",".join(f"{k}={_short(v)}" for k, v in kw.items())


@pytest.mark.parametrize("case", INVALID, ids=[_id(c) for c in INVALID])
@pytest.mark.parametrize("bound", [False, True], ids=["pure", "stateful"])
def test_invalid_hyperparameter(case, bound):
    cls, kw, exc, fragments = case
    x = np.ones(3)
    with pytest.raises(exc) as info:
        cls([x], **kw) if bound else cls(**kw)
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    np.testing.assert_array_equal(x, np.ones(3))


@pytest.mark.parametrize("case", [c for c in INVALID if c[2] is ValueError and "conventions" not in c[1]],
                         ids=[_id(c) for c in INVALID if c[2] is ValueError and "conventions" not in c[1]])
def test_invalid_hyperparameter_in_a_param_group(case):
    cls, kw, _, fragments = case
    x, y = two_params()
    groups = [{"params": [x]}, {"params": [y], **kw}]
    with pytest.raises(ValueError) as info:
        cls(groups)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "param group 1" in str(info.value)
    # the pure API checks groups as well
    with pytest.raises(ValueError, match="param group 1"):
        cls().init(groups)


def test_param_group_with_an_unknown_hyperparameter():
    x, y = two_params()
    with pytest.raises(ValueError) as info:
        adaopt.Adam([{"params": [x]}, {"params": [y], "momentum": 0.9}])
    assert "momentum" in str(info.value) and "param group 1" in str(info.value)


def test_valid_hyperparameters_are_accepted():
    """The boundaries of every allowed range."""
    x = np.ones(2)
    adaopt.SGD([x], lr=0, momentum=0.0, dampening=1)
    adaopt.SGD([x], momentum=0.999, nesterov=True)
    adaopt.Adam([x], betas=(0.0, 0.0), eps=0.0, weight_decay=0)
    adaopt.RMSprop([x], alpha=0.0)
    adaopt.AdaGrad([x], lr_decay=0, initial_accumulator_value=0, eps_in_sqrt=True)
    adaopt.Adam([x], betas=[0.5, 0.5], lr=np.float32(0.5), eps=np.float64(1e-8))
    adaopt.SGD([x], lr=1, momentum=np.float64(0.5))


def test_numbers_of_other_types_are_accepted_as_floats():
    """NumPy scalars, Fraction and Decimal that a float holds are numbers; they are kept as
    Python floats, like every other number (one arithmetic for all inputs)."""
    x = np.ones(2)
    opt = adaopt.Adam([x], lr=np.int64(1), betas=(np.float16(0.5), Fraction(999, 1000)),
                      eps=Decimal("1e-8"), weight_decay=Fraction(1, 100))
    d = opt.defaults
    assert d["lr"] == 1.0 and type(d["lr"]) is float
    assert d["betas"] == (0.5, 0.999) and all(type(b) is float for b in d["betas"])
    assert d["eps"] == 1e-8 and type(d["eps"]) is float
    assert d["weight_decay"] == 0.01 and type(d["weight_decay"]) is float
    opt = adaopt.SGD([x], lr=10**300, momentum=np.float32(0.5))  # a big int a float holds is fine
    assert opt.defaults["lr"] == 1e300 and opt.defaults["momentum"] == 0.5


def test_huge_values_make_short_messages():
    for value in (10**400, -(10**400), 10**5000, Fraction(10**400, 3), "x" * 10_000,
                  (10**400, 10**400)):
        with pytest.raises(ValueError) as info:
            adaopt.Adam([np.ones(2)], lr=value)
        assert len(str(info.value)) < 300, str(info.value)
    with pytest.raises(ValueError) as info:
        adaopt.Adam([np.ones(2)], betas=(10**400, 10**400))
    assert len(str(info.value)) < 300, str(info.value)


MUTATED = [
    # (classes, key, values): each value written into a bound group before a step
    (ALL, "lr", [10**400, -(10**400), np.float32("nan"), Fraction(10**400), Decimal("NaN"), 1 + 0j,
                 "0.1", None]),
    (ALL, "weight_decay", [10**400, np.float64("inf"), None, "0"]),
    ([adaopt.Adam, adaopt.AdamW], "betas", [(10**400, 0.9), (0.9, np.float32("nan")), (0.9, None),
                                             None, (0.9, 0.99 + 0j)]),
    ([adaopt.Adam, adaopt.AdamW, adaopt.RMSprop, adaopt.AdaGrad], "eps", [10**400, 1j, "1e-8"]),
    ([adaopt.SGD, adaopt.RMSprop], "momentum", [10**400, None, np.complex64(0.5)]),
]
MUTATED_CASES = [(cls, key, v) for classes, key, values in MUTATED for cls in classes for v in values]


@pytest.mark.parametrize("cls, key, value", MUTATED_CASES,
                         ids=[f"{c.__name__}-{k}-{i}" for i, (c, k, v) in enumerate(MUTATED_CASES)])
def test_group_edited_to_a_value_no_float_holds_makes_step_raise_and_change_nothing(cls, key, value):
    """opt.param_groups[0]["lr"] = 10**400 used to raise OverflowError from the step."""
    params = list(two_params())
    opt = warmed_up(cls, params)
    snap = snapshot(opt, params)
    opt.param_groups[0][key] = value
    with pytest.raises(ValueError) as info:
        opt.step([np.ones(3), np.ones((2, 2))])
    msg = str(info.value)
    assert f"{key}=" in msg and "param group 0" in msg, msg
    assert len(msg) < 300, msg
    opt.param_groups[0][key] = snap[1]["param_groups"][0][key]
    assert_unchanged(opt, params, snap)
    same_next_step(opt, params, cls)


def test_lesson_helpers_refuse_huge_and_odd_betas():
    from adaopt import hyper, registry

    for beta in (10**400, np.float32("nan"), 1j, "0.9", None, Decimal("NaN")):
        for fn in (hyper.ema_window, hyper.half_life, lambda b: hyper.bias_correction_factor(b, 1)):
            with pytest.raises(ValueError, match="beta="):
                fn(beta)


@pytest.mark.parametrize("cls, flag", [(adaopt.Adam, "amsgrad"), (adaopt.RMSprop, "centered"),
                                       (adaopt.SGD, "maximize"), (adaopt.AdaGrad, "eps_in_sqrt")])
def test_numpy_bool_flags_are_accepted(cls, flag):
    """hyper._flag means to accept NumPy booleans (it tests for the type name 'bool_'), but
    under NumPy 2 that type is named 'bool', so np.True_ is refused as not a flag."""
    x = np.ones(2)
    opt = cls([x], **{flag: np.bool_(True)})
    assert opt.defaults[flag]


# ---------------------------------------------------------------------- eps that rounds to zero


@pytest.mark.parametrize("cls", [adaopt.Adam, adaopt.AdamW, adaopt.RMSprop, adaopt.AdaGrad])
@pytest.mark.parametrize("param_dtype", [np.float16, np.float32, np.float64])
def test_explicit_eps_1e8_with_float16_state_raises(cls, param_dtype):
    x = np.ones(3, dtype=param_dtype)
    with pytest.raises(ValueError) as info:
        cls([x], eps=1e-8, state_dtype="float16")
    msg = str(info.value)
    assert "eps=1e-08" in msg and "float16" in msg, msg
    np.testing.assert_array_equal(x, np.ones(3, dtype=param_dtype))
    # the pure API refuses it at init
    with pytest.raises(ValueError, match="float16"):
        cls(eps=1e-8, state_dtype="float16").init([x])


@pytest.mark.parametrize("cls", [adaopt.Adam, adaopt.RMSprop, adaopt.AdaGrad])
def test_float16_eps_that_is_fine(cls):
    x = np.ones(3, dtype=np.float16)
    cls([x], eps=1e-8)  # float16 params compute in float32 by default
    cls([x.copy()], eps=1e-4, state_dtype="float16")
    cls([x.copy()], state_dtype="float16")  # eps=None picks a safe one


# ---------------------------------------------------------------------- mismatched gradients, stateful


def _bad_list_grads():
    gx, gy = two_params()
    return {
        "second_wrong_shape": ([gx, np.zeros(3)], ValueError, ["'1'", "(3,)", "(2, 2)"]),
        "second_transposed_shape": ([gx, np.zeros((1, 4))], ValueError, ["'1'", "(1, 4)"]),
        "second_wrong_dtype": ([gx, gy.astype(np.float32)], TypeError, ["'1'", "float32", "float64"]),
        "second_int_dtype": ([gx, gy.astype(np.int64)], TypeError, ["'1'", "int64"]),
        "second_is_none": ([gx, None], (ValueError, TypeError), ["'1'"]),
        "first_wrong_shape": ([np.zeros(4), gy], ValueError, ["'0'"]),
        "too_few": ([gx], ValueError, ["length 2", "length 1"]),
        "too_many": ([gx, gy, gy], ValueError, ["length 2", "length 3"]),
        "not_a_list": (gx, ValueError, ["length 2"]),
        "nested_too_deep": ([gx, [gy]], ValueError, ["expected an array"]),
    }


BAD_LIST = _bad_list_grads()


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", BAD_LIST)
def test_step_with_bad_grads_changes_nothing(cls, bad):
    grads, exc, fragments = BAD_LIST[bad]
    params = list(two_params())
    opt = warmed_up(cls, params)
    snap = snapshot(opt, params)
    with pytest.raises(exc) as info:
        opt.step(grads)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    assert_unchanged(opt, params, snap)
    same_next_step(opt, params, cls)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", ["missing_key", "extra_key", "wrong_key", "second_wrong_shape",
                                 "a_list"])
def test_step_with_bad_dict_grads_changes_nothing(cls, bad):
    a, b = two_params()
    params = {"a": a, "b": b}
    opt = cls(params, **OPTIONS[cls])
    opt.step({"a": a + 1, "b": b - 1})
    snap = snapshot(opt, [a, b])
    grads, fragments = {
        "missing_key": ({"a": np.zeros(3)}, ["['a', 'b']", "got ['a']"]),
        "extra_key": ({"a": np.zeros(3), "b": np.zeros((2, 2)), "c": np.zeros(1)},
                      ["['a', 'b']", "got ['a', 'b', 'c']"]),
        "wrong_key": ({"a": np.zeros(3), "B": np.zeros((2, 2))}, ["['a', 'b']", "'B'"]),
        "second_wrong_shape": ({"a": np.zeros(3), "b": np.zeros(4)}, ["'b'", "(4,)", "(2, 2)"]),
        "a_list": ([np.zeros(3), np.zeros((2, 2))], ["['a', 'b']", "list"]),
    }[bad]
    with pytest.raises(ValueError) as info:
        opt.step(grads)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    assert_unchanged(opt, [a, b], snap)
    # the pure API refuses the same gradients and leaves its inputs alone
    popt = cls(**OPTIONS[cls])
    state = popt.init(params)
    state_copy = copy.deepcopy(state)
    with pytest.raises(ValueError):
        popt.update(grads, state, params)
    assert_same_state(state, state_copy)
    assert_unchanged(opt, [a, b], snap)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_update_with_int_grads_for_int_params_raises(cls):
    """The pure API reads int parameters as float64 (it returns new arrays), so their
    gradients must be float64 too; an int gradient is a dtype mismatch."""
    params = [np.arange(3), np.arange(4).reshape(2, 2)]
    opt = cls(**OPTIONS[cls])
    state = opt.init(params)
    state_copy = copy.deepcopy(state)
    with pytest.raises(TypeError, match="int64"):
        opt.update([np.ones(3), np.ones((2, 2), dtype=np.int64)], state, params)
    assert_same_state(state, state_copy)
    assert params[0].dtype == np.int64 and np.array_equal(params[0], np.arange(3))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", ["one_group", "three_groups", "flat_list", "second_group_bad_shape",
                                 "second_group_bad_dtype"])
def test_step_with_grads_for_the_wrong_groups_changes_nothing(cls, bad):
    x, y = two_params()
    opt = cls([{"params": [x]}, {"params": [y], "lr": 0.05}], **OPTIONS[cls])
    opt.step([[x * 0.5], [y * 0.5]])
    snap = snapshot(opt, [x, y])
    grads = {
        "one_group": [[np.zeros(3)]],
        "three_groups": [[np.zeros(3)], [np.zeros((2, 2))], [np.zeros(1)]],
        "flat_list": [np.zeros(3), np.zeros((2, 2))],
        "second_group_bad_shape": [[np.zeros(3)], [np.zeros(4)]],
        "second_group_bad_dtype": [[np.zeros(3)], [np.zeros((2, 2), dtype=np.float32)]],
    }[bad]
    with pytest.raises((ValueError, TypeError)):
        opt.step(grads)
    assert_unchanged(opt, [x, y], snap)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("group", [0, 1])
@pytest.mark.parametrize("key, value", [("lr", -1), ("lr", float("nan")), ("weight_decay", -1),
                                        ("maximize", "no")])
def test_hyperparameter_mutated_to_invalid_makes_step_raise_and_change_nothing(cls, group, key, value):
    x, y = two_params()
    opt = cls([{"params": [x]}, {"params": [y]}], **OPTIONS[cls])
    opt.step([[x + 1], [y + 1]])
    snap = snapshot(opt, [x, y])
    opt.param_groups[group][key] = value
    with pytest.raises(ValueError) as info:
        opt.step([[x + 1], [y + 1]])
    assert f"{key}={value!r}" in str(info.value)
    opt.param_groups[group][key] = snap[1]["param_groups"][group][key]  # put it back to compare
    assert_unchanged(opt, [x, y], snap)


def test_lr_mutated_to_minus_one_on_a_single_group():
    """The brief's exact case: opt.param_groups[0]["lr"] = -1."""
    params = list(two_params())
    opt = warmed_up(adaopt.Adam, params)
    snap = snapshot(opt, params)
    opt.param_groups[0]["lr"] = -1
    with pytest.raises(ValueError, match=r"lr=-1"):
        opt.step([np.ones(3), np.ones((2, 2))])
    for p, q in zip(params, snap[0]):
        assert np.array_equal(p, q)
    assert_same_state(opt.state, snap[1]["state"])


@pytest.mark.parametrize("key, value, fragments", [
    ("momentum", 1.0, ["momentum=1.0"]),
    ("nesterov", True, ["nesterov=True"]),
    ("dampening", -0.5, ["dampening=-0.5"]),
])
def test_sgd_mutated_hyperparameters(key, value, fragments):
    x, y = two_params()
    opt = adaopt.SGD([x, y], lr=0.1, momentum=0.5, dampening=0.5)
    opt.step([x, y])
    snap = snapshot(opt, [x, y])
    opt.param_groups[0][key] = value
    with pytest.raises(ValueError) as info:
        opt.step([x, y])
    for fragment in fragments:
        assert fragment in str(info.value)
    for p, q in zip([x, y], snap[0]):
        assert np.array_equal(p, q)
    assert_same_state(opt.state, snap[1]["state"])


@pytest.mark.parametrize("cls", [adaopt.Adam, adaopt.RMSprop, adaopt.AdaGrad])
def test_eps_mutated_to_round_to_zero_in_the_second_group_changes_nothing(cls):
    x, y = two_params(np.float16)
    opt = cls([{"params": [x]}, {"params": [y]}], state_dtype="float16")
    opt.step([[x], [y]])
    snap = snapshot(opt, [x, y])
    opt.param_groups[1]["eps"] = 1e-8
    with pytest.raises(ValueError) as info:
        opt.step([[x], [y]])
    assert "eps=1e-08" in str(info.value) and "float16" in str(info.value)
    for p, q in zip([x, y], snap[0]):
        assert np.array_equal(p, q)
    assert_same_state(opt.state, snap[1]["state"])


# ---------------------------------------------------------------------- bad parameters, stateful


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad, exc, fragments", [
    (3.0, TypeError, ["'1'", "float"]),
    ([1.0, 2.0], TypeError, ["'1.0'", "float"]),
    (np.arange(3), TypeError, ["'1'", "int64"]),
    (np.array([True, False]), TypeError, ["'1'", "bool"]),
    (np.ones(2, dtype=np.complex128), TypeError, ["'1'", "complex128"]),
    ("abc", TypeError, ["'1'", "str"]),
])
def test_stateful_rejects_non_float_array_params(cls, bad, exc, fragments):
    x = np.ones(3)
    with pytest.raises(exc) as info:
        cls([x, bad])
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    np.testing.assert_array_equal(x, np.ones(3))


def test_stateful_rejects_a_read_only_param():
    x = np.ones(3)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        adaopt.Adam([np.ones(2), x])


def test_step_without_params_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no parameters"):
        adaopt.Adam(lr=0.1).step([np.ones(2)])


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", ["invalid_lr", "unknown_hyperparameter", "int_param", "non_array_param",
                                 "not_a_dict", "nesterov_without_momentum"])
def test_add_param_group_rejected_changes_nothing(cls, bad):
    """A rejected group leaves the optimizer as it was: names, state, groups, checkpoints.

    With one group bound, adding a second renames the first group's parameters ('0' ->
    '0.0'); a group that is then rejected must not leave that renaming behind.
    """
    params = list(two_params())
    opt = warmed_up(cls, params)
    snap = snapshot(opt, params)
    group = {
        "invalid_lr": {"params": [np.ones(2)], "lr": -1},
        "unknown_hyperparameter": {"params": [np.ones(2)], "nonsense": 1},
        "int_param": {"params": [np.arange(2)]},
        "non_array_param": {"params": [np.ones(2), 3.0]},
        "not_a_dict": [np.ones(2)],
        "nesterov_without_momentum": {"params": [np.ones(2)], "nesterov": True, "momentum": 0.0},
    }[bad]
    with pytest.raises((ValueError, TypeError)):
        opt.add_param_group(group)
    assert_unchanged(opt, params, snap)
    # a checkpoint taken before the failed call still loads
    opt.load_state_dict(snap[1])
    same_next_step(opt, params, cls)


@pytest.mark.parametrize("cls", [adaopt.Adam, adaopt.RMSprop, adaopt.AdaGrad])
def test_add_param_group_failing_on_its_second_param_adds_nothing(cls):
    """eps=1e-46 is fine for a float64 parameter but rounds to 0 in float32: the group's
    first parameter must not be left half-registered when the second one is refused."""
    x, y = two_params()
    opt = cls([{"params": [x]}, {"params": [y]}])
    opt.step([[x], [y]])
    snap = snapshot(opt, [x, y])
    with pytest.raises(ValueError) as info:
        opt.add_param_group({"params": [np.ones(2), np.ones(2, dtype=np.float32)], "eps": 1e-46})
    assert "eps=1e-46" in str(info.value) and "float32" in str(info.value)
    assert_unchanged(opt, [x, y], snap)
    assert len(opt.param_groups) == 2
    # the optimizer still round-trips its own state_dict
    opt.load_state_dict(opt.state_dict())


# ---------------------------------------------------------------------- mismatched inputs, pure API


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", BAD_LIST)
def test_update_with_bad_grads_changes_nothing(cls, bad):
    grads, exc, _ = BAD_LIST[bad]
    params = list(two_params())
    opt = cls(**OPTIONS[cls])
    state = opt.init(params)
    params, state = opt.update([p + 1 for p in params], state, params)
    params_copy, state_copy = [p.copy() for p in params], copy.deepcopy(state)
    with pytest.raises(exc):
        opt.update(grads, state, params)
    for p, q in zip(params, params_copy):
        assert np.array_equal(p, q)
    assert_same_state(state, state_copy)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_update_with_a_state_that_does_not_fit(cls):
    params = list(two_params())
    opt = cls(**OPTIONS[cls])
    good = opt.init(params)
    grads = [np.ones(3), np.ones((2, 2))]

    missing = {"0": good["0"]}
    with pytest.raises(ValueError, match=r"'1'"):
        opt.update(grads, missing, params)

    bad_step = copy.deepcopy(good)
    bad_step["1"]["step"] = -1
    with pytest.raises(CheckpointError, match=r"step=-1"):
        opt.update(grads, bad_step, params)

    not_dict = copy.deepcopy(good)
    not_dict["1"] = [1, 2]
    with pytest.raises(CheckpointError, match=r"'1'"):
        opt.update(grads, not_dict, params)

    buffers = [k for k in good["1"] if k != "step"]
    if buffers:
        bad_shape = copy.deepcopy(good)
        bad_shape["1"][buffers[0]] = np.zeros(4)
        with pytest.raises(CheckpointError) as info:
            opt.update(grads, bad_shape, params)
        assert buffers[0] in str(info.value) and "(4,)" in str(info.value)
        assert_same_state(good, opt.init(params))  # the inputs were never touched


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_update_with_groups_and_the_wrong_number_of_gradient_trees(cls):
    x, y = two_params()
    groups = [{"params": [x]}, {"params": [y], "lr": 0.5}]
    opt = cls(**OPTIONS[cls])
    state = opt.init(groups)
    state_copy = copy.deepcopy(state)
    for grads in ([[np.ones(3)]], [np.ones(3), np.ones((2, 2))], [[np.ones(3)], [np.ones(3)]]):
        with pytest.raises(ValueError):
            opt.update(grads, state, groups)
    assert_same_state(state, state_copy)
    x2, y2 = two_params()
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


# ---------------------------------------------------------------------- corrupted checkpoints


@pytest.fixture(params=ALL, ids=lambda c: c.__name__)
def trained(request, tmp_path):
    """(cls, opt, params, path of a valid checkpoint of opt)."""
    cls = request.param
    params = list(two_params())
    opt = warmed_up(cls, params, steps=3)
    path = tmp_path / "good.npz"
    opt.save(path)
    return cls, opt, params, path


def _load_fails(opt, params, path, *fragments, load=None):
    """Loading ``path`` (or ``load()``) is a CheckpointError naming ``fragments``; nothing changed."""
    snap = snapshot(opt, params)
    with pytest.raises(CheckpointError) as info:
        load() if load is not None else opt.load(path)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    assert_unchanged(opt, params, snap)
    return msg


@pytest.mark.parametrize("keep", [0, 2, 10, 0.5, -22, -1])
def test_truncated_checkpoint(trained, tmp_path, keep):
    cls, opt, params, good = trained
    data = good.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[:n])
    _load_fails(opt, params, bad, str(bad))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_checkpoint(trained, tmp_path, seed):
    cls, opt, params, _ = trained
    bad = tmp_path / "random.npz"
    bad.write_bytes(np.random.default_rng(seed).bytes(4096))
    _load_fails(opt, params, bad, str(bad))


def test_random_bytes_after_a_zip_signature(trained, tmp_path):
    cls, opt, params, _ = trained
    bad = tmp_path / "zipish.npz"
    bad.write_bytes(b"PK\x03\x04" + np.random.default_rng(5).bytes(2000))
    _load_fails(opt, params, bad, str(bad))


def test_npz_without_metadata(trained, tmp_path):
    cls, opt, params, good = trained
    bad = tmp_path / "nometa.npz"
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "__meta__"}
    np.savez(bad, **arrays)
    _load_fails(opt, params, bad, "__meta__", str(bad))


def test_plain_npz_of_the_params(trained, tmp_path):
    cls, opt, params, _ = trained
    bad = tmp_path / "params.npz"
    np.savez(bad, *params)
    _load_fails(opt, params, bad, "__meta__")


def _rewrite_meta(good, bad, edit):
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["__meta__"].tobytes().decode())
    meta = edit(meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(bad, **arrays)


@pytest.mark.parametrize("edit, fragments", [
    (lambda m: {**m, "format": "something-else"}, ["format", "something-else"]),
    (lambda m: {**m, "version": 99}, ["version", "99"]),
    (lambda m: {**m, "arrays": m["arrays"] + [{"entry": "a999", "param": "0", "key": "x",
                                                "dtype": "float64"}]}, ["a999"]),
    (lambda m: {k: v for k, v in m.items() if k != "steps"}, []),
    (lambda m: {**m, "arrays": [dict(a, dtype="float32") for a in m["arrays"]]}, ["float32"]),
    (lambda m: {**m, "steps": {k: -3 for k in m["steps"]}}, ["step=-3"]),
    # a fractional or textual step is corruption too; int() must not quietly round it
    (lambda m: {**m, "steps": {k: v + 0.5 for k, v in m["steps"].items()}}, ["step"]),
    (lambda m: {**m, "steps": {k: str(v) for k, v in m["steps"].items()}}, ["step"]),
], ids=["format", "version", "missing_array", "no_steps", "dtype_mismatch", "negative_step",
        "fractional_step", "string_step"])
def test_checkpoint_with_tampered_metadata(trained, tmp_path, edit, fragments):
    cls, opt, params, good = trained
    bad = tmp_path / "tampered.npz"
    _rewrite_meta(good, bad, edit)
    _load_fails(opt, params, bad, *fragments)


@pytest.mark.parametrize("meta", [b"[1, 2]", b"42", b"\"adaopt\"", b"null", b"{not json",
                                  b"\xff\xfe\x00"], ids=["list", "number", "string", "null",
                                                         "broken_json", "not_utf8"])
def test_checkpoint_whose_metadata_is_not_a_json_object(trained, tmp_path, meta):
    """__meta__ that is not a JSON object is a corrupted checkpoint (CheckpointError),
    not an AttributeError from deep inside the loader."""
    cls, opt, params, _ = trained
    bad = tmp_path / "badmeta.npz"
    np.savez(bad, __meta__=np.frombuffer(meta, dtype=np.uint8))
    _load_fails(opt, params, bad, str(bad))


def test_checkpoint_for_a_different_optimizer_class(trained, tmp_path):
    cls, opt, params, _ = trained
    other_cls = adaopt.AdamW if cls is adaopt.Adam else adaopt.Adam
    other_params = list(two_params())
    other = warmed_up(other_cls, other_params)
    path = tmp_path / "other.npz"
    other.save(path)
    _load_fails(opt, params, path, other_cls.__name__, cls.__name__)
    # and through load_state_dict
    snap = snapshot(opt, params)
    with pytest.raises(CheckpointError, match=other_cls.__name__):
        opt.load_state_dict(other.state_dict())
    assert_unchanged(opt, params, snap)


def test_checkpoint_with_other_conventions(trained, tmp_path):
    cls, opt, params, _ = trained
    other = cls(list(two_params()), conventions="lesson")
    path = tmp_path / "lesson.npz"
    other.save(path)
    _load_fails(opt, params, path, "lesson", "torch")


def test_checkpoint_for_other_parameter_names(trained, tmp_path):
    cls, opt, params, _ = trained
    x, y = two_params()
    other = cls({"w": x, "b": y}, **OPTIONS[cls])
    other.step({"w": x, "b": y})
    path = tmp_path / "names.npz"
    other.save(path)
    _load_fails(opt, params, path, "'w'", "'0'")


def test_checkpoint_for_other_parameter_shapes(trained, tmp_path):
    cls, opt, params, _ = trained
    x, y = np.ones(3), np.ones((2, 3))  # '1' is (2, 3), not (2, 2)
    other = cls([x, y], **OPTIONS[cls])
    other.step([x, y])
    path = tmp_path / "shapes.npz"
    other.save(path)
    _load_fails(opt, params, path, "'1'", "(2, 3)", "(2, 2)")


def test_checkpoint_with_more_parameters(trained, tmp_path):
    cls, opt, params, _ = trained
    x, y = two_params()
    other = cls([x, y, np.ones(5)], **OPTIONS[cls])
    path = tmp_path / "more.npz"
    other.save(path)
    _load_fails(opt, params, path, "'2'")


def test_checkpoint_with_other_group_count(trained, tmp_path):
    cls, opt, params, _ = trained
    x, y = two_params()
    other = cls([{"params": [x]}, {"params": [y]}], **OPTIONS[cls])
    path = tmp_path / "groups.npz"
    other.save(path)
    # the parameters are named by group there ('0.0', '1.0'): refused by name before any array is read
    _load_fails(opt, params, path, "'0.0'", "'0', '1'")
    _load_fails(opt, params, None, "2 param groups", "1", load=lambda: opt.load_state_dict(other.state_dict()))


def test_missing_checkpoint_file(trained, tmp_path):
    cls, opt, params, _ = trained
    snap = snapshot(opt, params)
    with pytest.raises(FileNotFoundError):
        opt.load(tmp_path / "nope.npz")
    assert_unchanged(opt, params, snap)


@pytest.mark.parametrize("bad", ["not_a_dict", "no_state", "group_without_params", "bad_step",
                                 "bad_buffer_shape", "invalid_hyperparameter", "state_not_a_dict"])
def test_corrupted_state_dict(trained, bad):
    """load_state_dict refuses a damaged state_dict with CheckpointError (a ValueError)
    and changes nothing."""
    cls, opt, params, _ = trained
    sd = opt.state_dict()
    if bad == "not_a_dict":
        sd = [1, 2, 3]
    elif bad == "no_state":
        del sd["state"]
    elif bad == "group_without_params":
        del sd["param_groups"][0]["params"]
    elif bad == "bad_step":
        sd["state"]["1"]["step"] = 2.5
    elif bad == "bad_buffer_shape":
        key = next(k for k in sd["state"]["1"] if k != "step")
        sd["state"]["1"][key] = np.zeros(7)
    elif bad == "invalid_hyperparameter":
        sd["param_groups"][0]["lr"] = -1
    elif bad == "state_not_a_dict":
        sd["state"]["1"] = "junk"
    snap = snapshot(opt, params)
    with pytest.raises(ValueError) as info:
        opt.load_state_dict(sd)
    if bad != "invalid_hyperparameter":  # a hyperparameter error is hyper.validate's ValueError
        assert isinstance(info.value, CheckpointError), type(info.value)
    assert_unchanged(opt, params, snap)


def test_a_checkpoint_loads_into_a_fresh_optimizer(trained):
    """The valid file used above really is loadable (the failures are the corruption's)."""
    cls, opt, params, path = trained
    fresh = cls(list(two_params()), **OPTIONS[cls])
    fresh.load(path)
    assert_same_state(fresh.state, opt.state)
    assert not math.isnan(float(np.sum(params[0])))
    assert os.path.getsize(path) > 0


def test_validate_cached_checks_changed_values_and_never_trusts_mutable_ones():
    from adaopt import hyper, registry

    hp = {**registry.SGD.defaults_for("torch"), "lr": 0.1, "state_dtype": None, "kahan": False,
          "stochastic_rounding": False}
    assert hyper.validate_cached(dict(hp), "g")["lr"] == 0.1
    with pytest.raises(ValueError, match="lr=-1"):
        hyper.validate_cached({**hp, "lr": -1.0}, "g")
    with pytest.raises(ValueError, match="nesterov"):  # 1 is not True, though 1 == True
        hyper.validate_cached({**hp, "nesterov": 1}, "g")
    # an unchanged group gets the very same validated dict: the frontends skip work on identity
    assert hyper.validate_cached(dict(hp), "g") is hyper.validate_cached(dict(hp), "g")
    adam = {**registry.ADAM.defaults_for("torch"), "lr": 0.1, "state_dtype": None, "kahan": False,
            "stochastic_rounding": False}
    betas = [0.9, 0.999]  # a list is not remembered: edited in place, it is checked again
    assert hyper.validate_cached({**adam, "betas": betas}, "g")["betas"] == (0.9, 0.999)
    betas[1] = 1.5
    with pytest.raises(ValueError, match="betas"):
        hyper.validate_cached({**adam, "betas": betas}, "g")


@pytest.mark.parametrize("typo, meant", [("betaz", "betas"), ("state_dtyp", "state_dtype"), ("khan", "kahan")])
def test_an_unknown_argument_names_the_near_one_and_every_option(typo, meant):
    """The list of what a class takes left out the frontend's own options (state_dtype, kahan,
    stochastic_rounding, backend, conventions), so a typo of one read as if it did not exist."""
    with pytest.raises(TypeError) as err:
        adaopt.AdamW({"w": np.zeros(3, np.float32)}, **{typo: 1})
    msg = str(err.value)
    assert f"{typo!r}: did you mean {meant!r}?" in msg, msg
    for option in ("conventions", "state_dtype", "kahan", "stochastic_rounding", "backend", "betas"):
        assert option in msg, (option, msg)
    with pytest.raises(TypeError, match="no_such_thing.*; it takes"):  # nothing near: no guess
        adaopt.SGD({"w": np.zeros(3, np.float32)}, no_such_thing=1)
    assert "did you mean" not in str(pytest.raises(TypeError, adaopt.SGD, {"w": np.zeros(3)}, zzz=1).value)


@pytest.mark.parametrize("given, meant", [("bf16", "bfloat16"), ("BF16", "bfloat16"), ("BFloat16", "bfloat16"),
                                          ("fp16", "float16"), ("FP32", "float32"),
                                          ("8bit", "int8")])
def test_a_short_dtype_name_is_refused_with_the_name_meant(given, meant):
    """A new user passed state_dtype='bf16' (Lightning's spelling): refused, and the message says
    which name adaopt takes."""
    with pytest.raises(ValueError, match=rf"state_dtype={given!r} is invalid: allowed .* \(did you mean {meant!r}\?\)"):
        adaopt.AdamW([np.zeros(3, np.float32)], state_dtype=given)


def test_an_unknown_dtype_name_gets_no_guess():
    with pytest.raises(ValueError, match=r"state_dtype='int4' is invalid: allowed [^(]*\(8-bit blockwise moments\) or one "
                                         r"of float64, float32, float16, bfloat16$"):
        adaopt.AdamW([np.zeros(3, np.float32)], state_dtype="int4")
