"""The fused kernels' 16-bit paths against the reference rule, bit for bit.

Kahan summation and stochastic rounding of bfloat16/float16 parameters, and 16-bit
moments of float32 parameters, are generated into the fused kernel (:mod:`adaopt.kernels.source`);
the reference (:mod:`adaopt.rounding`, the rules on whole arrays) defines every rounding,
so the two must give the same bits: parameters and every state buffer, compared as
integers, step after step, on the serial and the threaded kernel.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")
ml_dtypes = pytest.importorskip("ml_dtypes")

import adaopt  # noqa: E402
from adaopt import dtypes  # noqa: E402
from adaopt.kernels import fused  # noqa: E402

SHAPES = [(), (7,), (2, 3, 4), (33,)]
STEPS = 12
BF16 = np.dtype(ml_dtypes.bfloat16)

#: Every family, with the options that give it the most state.
FAMILIES = [
    (adaopt.SGD, dict(lr=0.05)),  # no state buffer at all
    (adaopt.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (adaopt.AdaGrad, dict(lr=0.05, weight_decay=0.01)),
    (adaopt.RMSprop, dict(lr=0.01, centered=True, momentum=0.9)),
    (adaopt.Adam, dict(lr=1e-3, amsgrad=True, weight_decay=0.1)),
    (adaopt.AdamW, dict(lr=1e-3)),
    (adaopt.Adadelta, dict(weight_decay=0.01)),
    (adaopt.Adamax, dict(lr=1e-3)),
    (adaopt.NAdam, dict(lr=1e-3)),
    (adaopt.RAdam, dict(lr=1e-3)),
]


def _id(case):
    cls, kw = case
    return cls.__name__ + "".join(f"-{k}={v}" for k, v in kw.items() if k != "lr")


def _run(cls, kw, backend, dtype, steps=STEPS, shapes=SHAPES):
    rng = np.random.default_rng(0)
    params = [np.asarray(rng.normal(size=s)).astype(dtype) for s in shapes]
    opt = cls(params, backend=backend, **kw)
    g_rng = np.random.default_rng(1)
    for _ in range(steps):
        opt.step([np.asarray(g_rng.normal(size=s)).astype(dtype) for s in shapes])
    return params, opt


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize])


def _assert_same_bits(cls, kw, dtype, **run):
    fast, f_opt = _run(cls, kw, "fused", dtype, **run)
    assert f_opt._plan.plan.buckets and not f_opt._plan.plan.reference, "not all stepped by the fused kernel"
    ref, r_opt = _run(cls, kw, "reference", dtype, **run)
    for x, y in zip(fast, ref):
        assert x.dtype == dtype and np.array_equal(_bits(x), _bits(y))
    for name, st in f_opt.state.items():
        assert st.keys() == r_opt.state[name].keys()
        for key, value in st.items():
            assert key == "step" or np.array_equal(_bits(value), _bits(r_opt.state[name][key])), (name, key)
    return fast, f_opt


@pytest.mark.parametrize("rounding", ["kahan", "stochastic_rounding"])
@pytest.mark.parametrize("case", FAMILIES, ids=_id)
def test_bf16_rounding_in_the_fused_kernel_equals_the_reference(case, rounding):
    cls, kw = case
    params, opt = _assert_same_bits(cls, {**kw, rounding: True}, BF16)
    start, _ = _run(cls, kw, "reference", BF16, steps=0)
    assert not np.array_equal(_bits(params[3]), _bits(start[3]))  # the run moved the parameters
    if rounding == "kahan":
        assert all(st["kahan_comp"].dtype == BF16 for st in opt.state.values())


@pytest.mark.parametrize("case", [FAMILIES[3], FAMILIES[5], FAMILIES[9]], ids=_id)
def test_float16_kahan_in_the_fused_kernel_equals_the_reference(case):
    cls, kw = case
    _assert_same_bits(cls, {**kw, "kahan": True}, np.dtype(np.float16))


@pytest.mark.parametrize("rounding", ["kahan", "stochastic_rounding", None])
@pytest.mark.parametrize("case", [FAMILIES[4], FAMILIES[8]], ids=_id)
def test_threaded_kernel_keys_each_element_by_its_index(case, rounding, monkeypatch):
    """Work items start inside tensors (BLOCK 8): the bits must not depend on where."""
    monkeypatch.setattr(fused, "PARALLEL_MIN", 16)
    monkeypatch.setattr(fused, "BLOCK", 8)
    cls, kw = case
    kw = {**kw, rounding: True} if rounding else {**kw, "state_dtype": "bfloat16"}
    _assert_same_bits(cls, kw, BF16 if rounding else np.dtype(np.float32))


def test_stochastic_rounding_keeps_specials_and_rounds_both_ways():
    """NaN stays a quiet NaN, inf stays inf, -0.0 and subnormals take the same path as the
    reference; values between two bfloat16 neighbours land on both of them."""
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-40, -3e-39, 3.0e38, 1.0, -1.0] + [0.5] * 32, np.float32)
    g = np.array([0.0, 0.0, 0.0, 0.0, 1e-41, 0.0, -1e38, 1e-3, 1e-3] + [1e-4] * 32, np.float32)
    out = {}
    for backend in ("fused", "reference"):
        p = x.astype(BF16)
        opt = adaopt.SGD([p], lr=1.0, stochastic_rounding=True, backend=backend)
        opt.step([(-g).astype(BF16)])
        out[backend] = _bits(p).copy()
        assert backend == "reference" or not opt._plan.plan.reference
    assert np.array_equal(out["fused"], out["reference"])
    assert out["fused"][0] == 0x7FC0 and out["fused"][1] == 0x7F80 and out["fused"][2] == 0xFF80
    assert len(set(out["fused"][9:])) == 2  # 0.5 + 1e-4 rounded down and up


@pytest.mark.parametrize("state_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("case", [FAMILIES[2], FAMILIES[3], FAMILIES[5], FAMILIES[8]], ids=_id)
def test_16_bit_moments_of_float32_parameters_in_the_fused_kernel(case, state_dtype):
    """The moments are stored in 16 bits, the arithmetic and the parameters stay float32."""
    cls, kw = case
    params, opt = _assert_same_bits(cls, {**kw, "state_dtype": state_dtype}, np.dtype(np.float32))
    want = dtypes.as_dtype(state_dtype)
    for st in opt.state.values():
        assert all(v.dtype == want for k, v in st.items() if k != "step" and np.ndim(v))
    # float32 parameters, not bfloat16 values in float32 clothes: the arithmetic is float32
    p = params[3]
    assert not np.array_equal(p, p.astype(want).astype(np.float32))


def test_bf16_moments_with_bf16_parameters_and_kahan_are_fused():
    """bfloat16 parameters and moments, as torch's fused AdamW keeps them, plus Kahan."""
    _assert_same_bits(adaopt.AdamW, dict(lr=1e-3, kahan=True, state_dtype="bfloat16"), BF16)
    _assert_same_bits(adaopt.AdamW, dict(lr=1e-3, stochastic_rounding=True, state_dtype="bfloat16"), BF16)


def test_bfloat16_moments_track_float32_moments():
    """bfloat16 storage of float32 arithmetic: the parameters stay within a few bfloat16
    ulps of the update of a float32-state run (the moments' relative error is 2**-9)."""
    for seed in (0, 1, 2):
        runs = {}
        for sd in (None, "bfloat16"):
            rng = np.random.default_rng(seed)
            p0 = rng.normal(size=1000).astype(np.float32)
            p = p0.copy()
            opt = adaopt.AdamW([p], lr=1e-3, state_dtype=sd)
            for t in range(50):
                opt.step([(p - 1.0 + 0.3 * rng.normal(size=1000)).astype(np.float32)])
            runs[sd] = p - p0
        moved = np.abs(runs[None]).mean()
        assert np.abs(runs["bfloat16"] - runs[None]).mean() < 0.02 * moved


@pytest.mark.parametrize("dtype, kw", [
    (BF16, {}), (BF16, {"kahan": True}), (BF16, {"stochastic_rounding": True}),
    (BF16, {"state_dtype": "bfloat16"}), (BF16, {"kahan": True, "state_dtype": "bfloat16"}),
    (np.dtype(np.float32), {"state_dtype": "bfloat16"}), (np.dtype(np.float16), {}),
    (np.dtype(np.float16), {"kahan": True}), (np.dtype(np.float32), {"state_dtype": "float16"}),
], ids=lambda v: str(v))
def test_non_finite_gradients_give_the_same_bits_fused_and_reference(dtype, kw):
    """inf and NaN of both signs in the gradient (x86 makes negative NaNs of inf - inf). Every
    number that is not a NaN has the same bits on both paths, NaNs sit in the same places, and a
    NaN rounded into bfloat16 is 0x7FC0 on both (torch's choice; ml_dtypes' astype kept the
    sign, so the reference wrote 0xFFC0 where the kernel wrote 0x7FC0). Which NaN arithmetic
    makes (its sign and payload) is the CPU's and the compiler's, like a last bit, so NaNs that
    are stored as computed (float32 state, float16, bfloat16's truncated Kahan compensation)
    are compared as NaNs. Two steps, so the second reads NaN and inf from the state."""
    n = 2 * fused.PARALLEL_MIN + 33  # the threaded kernel too
    out = []
    for backend in ("fused", "reference"):
        p = np.linspace(-1, 1, n).astype(dtype)
        g = np.full(n, 0.5, np.float32)
        g[3:n:97], g[5:n:97], g[7:n:97], g[9:n:97] = np.inf, -np.inf, np.nan, -np.nan
        opt = adaopt.AdamW([p], lr=1e-3, backend=backend, **kw)
        with np.errstate(all="ignore"):  # the reference's inf - inf
            for _ in range(2):
                opt.step([g.astype(dtype)])
        assert backend == "reference" or not opt._plan.plan.reference
        out.append(({"param": p, **next(iter(opt.state.values()))}))
    fused_run, ref_run = out
    assert not np.isfinite(fused_run["param"].astype(np.float32)).all()
    for key, value in fused_run.items():
        if key == "step":
            continue
        a, b = np.asarray(value), np.asarray(ref_run[key])
        nan = np.isnan(a.astype(np.float32))
        assert np.array_equal(nan, np.isnan(b.astype(np.float32))), key
        assert np.array_equal(_bits(a)[~nan], _bits(b)[~nan]), key
        rounded = a.dtype == BF16 and key != "kahan_comp"  # rounded to nearest (or stochastically)
        if rounded and nan.any():
            assert set(_bits(a)[nan]) == set(_bits(b)[nan]) == {0x7FC0}, key
