"""8-bit state (``state_dtype="int8"``) in the fused kernels, against the reference, bit for bit.

The reference dequantizes, runs the rule on whole float32 arrays and quantizes again
(:mod:`adaopt.quant`); the fused kernel does the same per 256-element block inside one
loop (:mod:`adaopt.kernels.source`). Codes and scales are compared as integers, step
after step, on the serial kernel and on the threaded one with work items that start
inside tensors; and the compiled encoder/decoder against the NumPy ones they are made from.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import adaopt  # noqa: E402
from adaopt import quant  # noqa: E402
from adaopt.kernels import fused, q8  # noqa: E402

#: Quantized (>= 4096 elements, some not a multiple of 256) and small (float32 state) tensors.
SHAPES = [(4096,), (70, 90), (10,), (3, 2001)]
STEPS = 8

#: Every family with moments, with the options that give it the most state.
FAMILIES = [
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


def _run(cls, kw, backend, dtype=np.float32, steps=STEPS):
    rng = np.random.default_rng(0)
    params = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    opt = cls(params, backend=backend, state_dtype="int8", **kw)
    g_rng = np.random.default_rng(1)
    for t in range(steps):  # gradients of varied scale per block, some exactly zero
        grads = [(g_rng.normal(size=s) * np.exp(g_rng.uniform(-8, 2, size=s))).astype(dtype) for s in SHAPES]
        grads[0][:300] = 0.0 if t % 2 else grads[0][:300]
        opt.step(grads)
    return params, opt


def _bits(a) -> np.ndarray:
    a = np.asarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize])


def _assert_same_bits(cls, kw, dtype=np.float32):
    fast, f_opt = _run(cls, kw, "fused", dtype)
    plan = f_opt._plan.plan
    assert plan.buckets and not plan.reference, "not all stepped by the fused kernel"
    assert any(b.layout.quant for b in plan.buckets), "no 8-bit bucket"
    ref, r_opt = _run(cls, kw, "reference", dtype)
    for x, y in zip(fast, ref):
        assert np.array_equal(_bits(x), _bits(y))
    for name, st in f_opt.state.items():
        assert st.keys() == r_opt.state[name].keys()
        for key, value in st.items():
            assert key == "step" or np.array_equal(_bits(value), _bits(r_opt.state[name][key])), (name, key)
    return f_opt


@pytest.mark.parametrize("case", FAMILIES, ids=_id)
def test_int8_state_in_the_fused_kernel_equals_the_reference(case):
    opt = _assert_same_bits(*case)
    big, small = opt.state["0"], opt.state["2"]  # 4096 elements: 8-bit; 10: float32
    assert {v.dtype for k, v in big.items() if k != "step" and not k.endswith(quant.SCALE)
            and k in opt.rule.buffers(opt.param_groups[0])} <= {np.dtype(np.int8), np.dtype(np.uint8)}
    assert not any(k.endswith(quant.SCALE) for k in small)


@pytest.mark.parametrize("case", FAMILIES[2:5], ids=_id)
def test_threaded_int8_kernel_does_not_depend_on_the_work_items(case, monkeypatch):
    """Work groups of 1000 elements (items cut at 256-element blocks, inside tensors)."""
    monkeypatch.setattr(fused, "PARALLEL_MIN_INT8", 16)
    monkeypatch.setattr(fused, "BLOCK", 1000)
    opt = _assert_same_bits(*case)
    assert all(b.parallel for b in opt._plan.plan.buckets if b.layout.quant)


def test_bf16_parameters_with_int8_state_and_kahan_are_fused():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    _assert_same_bits(adaopt.AdamW, dict(lr=1e-3, kahan=True), np.dtype(ml_dtypes.bfloat16))
    _assert_same_bits(adaopt.AdamW, dict(lr=1e-3, stochastic_rounding=True), np.dtype(ml_dtypes.bfloat16))


def test_work_items_cut_tensors_only_at_block_boundaries():
    sizes = [5000, 300, 70000, 256, 1]
    for block in (1000, 4096, 1 << 15):
        fused_block = fused.BLOCK
        try:
            fused.BLOCK = block
            gs, wj, wa, wb = fused.work_items(sizes, True, quant.BLOCK)
        finally:
            fused.BLOCK = fused_block
        covered = {j: [] for j in range(len(sizes))}
        for j, a, b in zip(wj, wa, wb):
            covered[j].append((a, b))
            assert a % quant.BLOCK == 0 and (b % quant.BLOCK == 0 or b == sizes[j])
        for j, spans in covered.items():  # every element once, in order
            assert [x for span in spans for x in span] == sorted(x for span in spans for x in span)
            assert spans[0][0] == 0 and spans[-1][1] == sizes[j]
            assert all(s[1] == t[0] for s, t in zip(spans, spans[1:]))
        group = np.add.reduceat(wb - wa, gs[:-1])
        assert group.max() <= max(block, quant.BLOCK) and len(gs) - 1 >= sum(sizes) // max(block, quant.BLOCK)


@pytest.mark.parametrize("is_signed", [True, False])
def test_the_compiled_encoder_and_decoder_are_the_numpy_ones(is_signed):
    import numba

    encode = q8.encode_signed if is_signed else q8.encode_unsigned
    decode = q8.decode_signed if is_signed else q8.decode_unsigned

    @numba.njit
    def both(y, codes, points):
        out = np.empty(y.size, codes.dtype)
        back = np.empty(codes.size, np.float32)
        for i in range(y.size):
            out[i] = encode(y[i])
        for i in range(codes.size):
            back[i] = decode(codes[i])
        return out, back

    table = quant.SIGNED_MAP if is_signed else quant.UNSIGNED_MAP
    rng = np.random.default_rng(0)
    mids = ((table[1:].astype(np.float64) + table[:-1]) / 2).astype(np.float32)
    y = np.concatenate([table, mids, np.nextafter(mids, 2, dtype=np.float32), np.nextafter(mids, -2, dtype=np.float32),
                        np.float32([0, 1e-45, 1e-38, 1, np.nextafter(np.float32(1), 2)]),
                        rng.uniform(0, 1, 200_000).astype(np.float32) * np.exp(rng.uniform(-25, 0, 200_000)).astype(np.float32)])
    y = np.clip(y if is_signed else np.abs(y), -1.0000001, 1.0000001).astype(np.float32)
    if is_signed:
        y = np.concatenate([y, -y])
    y = np.concatenate([y, np.float32([np.nan, np.inf, -np.inf, -0.0, 3.0e38])])  # what saturation feeds it
    # every int8 code, -128 too (never written, but a state from elsewhere may hold it: read as -127)
    codes = np.arange(-128, 128).astype(np.int8) if is_signed else np.arange(256).astype(np.uint8)
    got, back = both(y, codes, table)
    want = quant.encode(y, is_signed).astype(codes.dtype)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_bits(back[1:] if is_signed else back), _bits(table))
    np.testing.assert_array_equal(_bits(back), _bits(quant.decode(codes, is_signed)))
    if is_signed:
        assert back[0] == -1.0 and quant.dequantize(codes[:1], np.float32([2.0]))[0] == -2.0


def test_torch_frontend_steps_int8_state_in_the_fused_kernel():
    torch = pytest.importorskip("torch")
    import adaopt.torch as at

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 10))
    twin = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 10))
    twin.load_state_dict(model.state_dict())
    X, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    opts = [at.AdamW(m.parameters(), lr=1e-2, state_dtype="int8", backend=b)
            for m, b in ((model, "fused"), (twin, "reference"))]
    for _ in range(5):
        for m, opt in zip((model, twin), opts):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(X), y).backward()
            opt.step()
    assert any(b.layout.quant for b in opts[0]._plan.plan.buckets)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
        for key, value in opts[0].state[p].items():
            assert torch.equal(value, opts[1].state[q][key]), key
