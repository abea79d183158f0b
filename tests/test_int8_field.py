"""What a new user's runs of the low-memory options found: 8-bit state must not cost a float
buffer's memory to create or load, refusals come at construction and name the reason, and
rounding options that cannot act say so."""

import tracemalloc
import warnings

import numpy as np
import pytest

import adaopt
from adaopt import quant


@pytest.mark.parametrize("key", ["exp_avg", "exp_avg_sq", "sum"])
@pytest.mark.parametrize("fill", [0.0, 0.1, 1e-30])
def test_a_new_8_bit_buffer_is_the_quantized_fill(key, fill):
    codes, absmax = quant.full((70, 90), fill, key)
    want_codes, want_absmax = quant.quantize(np.full((70, 90), fill, np.float32), key)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(absmax, want_absmax)
    assert codes.dtype == quant.code_dtype(key)


def test_quantizing_in_chunks_gives_the_same_codes(monkeypatch):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(10_000) * np.exp(rng.uniform(-10, 0, 10_000))).astype(np.float32)
    whole = quant.quantize(x, "exp_avg")
    monkeypatch.setattr(quant, "CHUNK_BLOCKS", 3)  # chunks of 768, the last one short
    parts = quant.quantize(x, "exp_avg")
    for a, b in zip(whole, parts):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(quant.dequantize(*parts), quant.dequantize(*whole))


def test_creating_8_bit_state_allocates_no_float_buffer():
    n = 2_000_000
    params = [np.zeros(n, np.float32)]
    tracemalloc.start()
    try:
        opt = adaopt.AdamW(params, lr=1e-3, state_dtype="int8", backend="reference")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert quant.state_bytes(opt.state["0"]) < 2.1 * n
    assert peak < 3 * n  # the codes and scales (2.03 n), not a float32 buffer (4 n each) first


def test_torch_int8_refusals_come_at_construction_with_the_reason():
    torch = pytest.importorskip("torch")
    import adaopt.torch as at

    m = torch.nn.Linear(128, 64)
    with pytest.raises(ValueError, match=r"state_dtype='int8' .*backend='tensor' is set"):
        at.AdamW(m.parameters(), state_dtype="int8", backend="tensor")
    emb = torch.nn.Embedding(1000, 64, sparse=True)
    opt = at.Adagrad(emb.parameters(), state_dtype="int8")
    emb(torch.tensor([1])).sum().backward()
    before = emb.weight.detach().clone()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\] has a sparse gradient"):
        opt.step()
    assert torch.equal(emb.weight, before)


def test_rounding_options_on_a_float32_model_warn():
    torch = pytest.importorskip("torch")
    import adaopt.torch as at

    m = torch.nn.Linear(8, 4)
    for option in ("kahan", "stochastic_rounding"):
        with pytest.warns(UserWarning, match=f"{option}=True in param group 0, which has no bfloat16"):
            at.AdamW(m.parameters(), **{option: True})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        at.AdamW(m.to(torch.bfloat16).parameters(), kahan=True)  # 16-bit: it acts, no warning
    # a float32 group added later warns too, from the user's line, and only for that group
    head, tail = torch.nn.Linear(8, 4).bfloat16(), torch.nn.Linear(4, 2)
    opt = at.AdamW(head.parameters(), kahan=True)
    with pytest.warns(UserWarning, match="kahan=True in param group 1, which has no bfloat16") as caught:
        opt.add_param_group({"params": tail.parameters(), "kahan": True})
    assert [w.filename for w in caught] == [__file__], [(w.filename, str(w.message)) for w in caught]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.add_param_group({"params": torch.nn.Linear(2, 2).parameters(), "kahan": False})  # option off: silent


def test_the_monitor_records_int8_when_the_first_tensor_is_small(tmp_path):
    torch = pytest.importorskip("torch")
    import adaopt.torch as at
    from adaopt.diagnostics import Monitor

    m = torch.nn.Sequential(torch.nn.Linear(8, 128), torch.nn.Linear(128, 64))  # first weight: 1024
    opt = at.AdamW(m.parameters(), state_dtype="int8")
    mon = Monitor(opt)
    for _ in range(3):
        opt.zero_grad()
        loss = m(torch.randn(4, 8)).pow(2).mean()
        loss.backward()
        opt.step()
        mon.log(loss)
    mon.save(tmp_path / "run.csv")
    assert '"state_dtype": "int8"' in (tmp_path / "run.csv").read_text().splitlines()[0]


def test_an_overflowed_moment_stays_inf_and_its_block_mates_read_0_not_nan():
    """Finite gradients of 1e21 overflow g^2: float32 state holds inf there (a zero step) and
    stays finite; 8-bit state must too (an infinite block scale decoded its zeros as 0 * inf =
    NaN), and the fused kernel must give the reference path's bits. A NaN stays NaN."""
    codes, absmax = quant.quantize(np.float32([np.inf, 0.0, 1.0, -2.0, -np.inf]), "exp_avg")
    assert absmax[0] == np.inf
    back = quant.dequantize(codes, absmax)
    np.testing.assert_array_equal(back, np.float32([np.inf, 0, 0, 0, -np.inf]))
    packed = quant.Packed(codes, absmax).reshape(-1)
    np.testing.assert_array_equal(packed[0:5], back)
    assert np.isnan(quant.quantize(np.float32([np.nan, 1.0]), "exp_avg")[1][0])
    assert np.isnan(quant.dequantize(*quant.quantize(np.float32([np.nan, 1.0]), "exp_avg"))).all()
    rng = np.random.default_rng(0)
    runs = {}
    for backend in ("fused", "reference"):
        w = {"w": np.zeros(8192, np.float32)}
        opt = adaopt.AdamW(w, state_dtype="int8", backend=backend)
        for _ in range(3):
            g = (rng.standard_normal(8192) * 1e21).astype(np.float32)
            g[::2] = 0
            with np.errstate(over="ignore"):  # g^2 overflows, as it would with float32 state
                opt.step({"w": g})
        runs[backend] = (opt._arrays["w"].copy(), {k: np.array(v) for k, v in opt.state["w"].items()})
        rng = np.random.default_rng(0)
    params, state = runs["fused"]
    assert np.isfinite(params).all()
    np.testing.assert_array_equal(params.view(np.uint32), runs["reference"][0].view(np.uint32))
    for k, v in state.items():
        np.testing.assert_array_equal(v, runs["reference"][1][k], err_msg=k)


@pytest.mark.parametrize("spike", [1e20, 1e25, 1e30])
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_one_huge_gradient_freezes_its_coordinate_as_float32_state_does(spike, backend):
    """A new user's gradient of 1e30 on one coordinate, once: float32 state's second moment
    overflows to inf and that coordinate stops (a step of about 0, for good). With the scale
    saturated at the largest float32, 8-bit state kept a finite second moment under a first
    moment of 1e29 and threw the coordinate 3e6 units in the following steps."""
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(8192).astype(np.float32) for _ in range(12)]
    grads[2][5] = spike
    out = {}
    for state_dtype in (None, "int8"):
        w = {"w": rng.standard_normal(8192).astype(np.float32) * 0 + 1}
        opt = adaopt.AdamW(w, lr=1e-3, state_dtype=state_dtype, backend=backend)
        for g in grads:
            with np.errstate(over="ignore"):
                opt.step({"w": g})
        out[state_dtype] = opt._arrays["w"].copy()
    assert np.isfinite(out["int8"]).all()
    # the spiked coordinate is where float32 state left it (both froze it on the spike's step)
    assert abs(out["int8"][5] - out[None][5]) < 3e-3, (out["int8"][5], out[None][5])
    # no coordinate moved more than Adam's steps allow: 12 steps of at most ~10 lr each
    assert np.abs(out["int8"] - 1).max() < 12 * 10 * 1e-3


def test_packed_reads_the_dequantized_numbers_where_sliced():
    rng = np.random.default_rng(0)
    for key in ("exp_avg", "exp_avg_sq"):
        x = rng.standard_normal((300, 70)).astype(np.float32) ** (2 if key == "exp_avg_sq" else 1)
        codes, absmax = quant.quantize(x, key)
        whole = quant.dequantize(codes, absmax).reshape(-1)
        packed = quant.Packed(codes, absmax)
        assert packed.shape == (300, 70) and packed.reshape(-1).shape == (21000,)
        for key_slice in (slice(0, 21000, 1), slice(5, 20000, 37), slice(255, 257), slice(20990, 21000, 3)):
            np.testing.assert_array_equal(packed.reshape(-1)[key_slice], whole[key_slice])
        with pytest.raises(ValueError, match="reshape"):
            packed.reshape(300, 70)


@pytest.mark.parametrize("frontend", ["numpy", "torch"])
def test_the_monitor_summary_of_8_bit_state_reads_only_its_sample(frontend, monkeypatch):
    """The state summary samples a few hundred coordinates: with 8-bit state it dequantized
    every moment whole first (130 ms a summary at 1e7). Same numbers as that, without the
    float buffers: the memory a summary takes stays far below one dequantized moment."""
    from adaopt.diagnostics import Monitor

    n = 1 << 20

    def run(lazy_ok):
        if not lazy_ok:  # the old way: every 8-bit buffer dequantized whole
            real = quant.floats
            monkeypatch.setattr(quant, "floats", lambda st, lazy=False: real(st, lazy=False))
        rng = np.random.default_rng(0)
        if frontend == "torch":
            torch = pytest.importorskip("torch")
            import adaopt.torch as at
            w = torch.nn.Parameter(torch.zeros(n))
            opt = at.AdamW([w], state_dtype="int8")
        else:
            opt = adaopt.AdamW({"w": np.zeros(n, np.float32)}, state_dtype="int8")
        mon = Monitor(opt, every=1)
        peaks = []
        for _ in range(4):
            g = rng.standard_normal(n).astype(np.float32)
            if frontend == "torch":
                w.grad = torch.from_numpy(g)
            tracemalloc.start()
            opt.step() if frontend == "torch" else opt.step({"w": g})
            mon.log(loss=1.0)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        monkeypatch.undo()
        return mon.history, max(peaks[1:])

    lazy, lazy_peak = run(True)
    whole, whole_peak = run(False)
    columns = [c for c in lazy.columns if c not in ("step",)]
    assert any(c.startswith(("lr_eff", "vhat")) for c in columns), columns
    for c in columns:
        np.testing.assert_array_equal(lazy[c], whole[c], err_msg=c)
    assert lazy_peak < 0.25 * 4 * n < whole_peak, (lazy_peak, whole_peak)  # one float32 moment is 4n bytes


@pytest.mark.parametrize("mode", ["skip", "raise"])
def test_on_nonfinite_guards_8bit_state_whose_nan_would_spread_to_its_block(mode):
    """A NaN gradient under 8-bit state makes its moment's whole 256-element block NaN (one NaN
    parameter became 256 a step later), and on_nonfinite was refused with int8: no protection
    at all. The check runs on the gradients before any kernel, so it guards 8-bit state as it
    does float32 state: nothing changes, and the finite steps are those of a run without it."""
    torch = pytest.importorskip("torch")
    import adaopt.torch as at

    torch.manual_seed(0)
    models = [torch.nn.Linear(128, 64) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    guarded = at.AdamW(models[0].parameters(), lr=1e-2, state_dtype="int8", on_nonfinite=mode)
    plain = at.AdamW(models[1].parameters(), lr=1e-2, state_dtype="int8")
    x = torch.randn(16, 128)
    for t in range(6):
        for m, opt in ((models[0], guarded), (models[1], plain)):
            xb = x.clone()
            if t == 3 and opt is guarded:
                xb[0, 0] = float("nan")
            opt.zero_grad()
            m(xb).pow(2).mean().backward()
            if t == 3 and opt is guarded:
                before = [p.detach().clone() for p in m.parameters()]
                state = {k: v.clone() for k, v in opt.state[m.weight].items()}
                if mode == "raise":
                    with pytest.raises(FloatingPointError, match=r"non-finite gradient for .*nothing was changed"):
                        opt.step()
                else:
                    opt.step()
                    assert opt.skipped_steps == 1
                assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
                assert all(torch.equal(opt.state[m.weight][k], v) for k, v in state.items())
            elif not (t == 3 and opt is plain):
                opt.step()
    assert guarded.state[models[0].weight]["exp_avg"].dtype == torch.int8
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)  # the skipped step is as if it never came
