"""The fused kernels against the reference rule, step for step, on every option."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("numba")

import adaopt  # noqa: E402
from adaopt import rules  # noqa: E402
from adaopt.kernels import codegen, fused  # noqa: E402

STEPS = 100
SHAPES = [(), (7,), (2, 3, 4), (33,)]
TOL = {"float32": dict(rtol=1e-6, atol=1e-7), "float64": dict(rtol=1e-12, atol=1e-14)}

# Each optimizer and option, declared as data: (class, options).
CASES = [
    (adaopt.SGD, dict(lr=0.05)),
    (adaopt.SGD, dict(lr=0.05, momentum=0.9)),
    (adaopt.SGD, dict(lr=0.05, momentum=0.9, dampening=0.5)),
    (adaopt.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (adaopt.SGD, dict(lr=0.05, momentum=0.5, weight_decay=0.1, maximize=True)),
    (adaopt.AdaGrad, dict(lr=0.1)),
    (adaopt.AdaGrad, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.5)),
    (adaopt.AdaGrad, dict(lr=0.1, weight_decay=0.1, maximize=True)),
    (adaopt.AdaGrad, dict(lr=0.1, eps_in_sqrt=True)),
    (adaopt.AdaGrad, dict(lr=0.1, conventions="optax")),
    (adaopt.RMSprop, dict(lr=0.01)),
    (adaopt.RMSprop, dict(lr=0.01, centered=True)),
    (adaopt.RMSprop, dict(lr=0.01, momentum=0.9)),
    (adaopt.RMSprop, dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.01)),
    (adaopt.RMSprop, dict(lr=0.01, eps_in_sqrt=True, maximize=True)),
    (adaopt.Adam, dict(lr=0.01)),
    (adaopt.Adam, dict(lr=0.01, amsgrad=True)),
    (adaopt.Adam, dict(lr=0.01, weight_decay=0.1, maximize=True)),
    (adaopt.Adam, dict(lr=0.01, bias_correction=False)),
    (adaopt.AdamW, dict(lr=0.01)),
    (adaopt.AdamW, dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    (adaopt.AdamW, dict(lr=0.01, conventions="lesson")),
]


def _id(case):
    cls, kw = case
    return cls.__name__ + "-" + "-".join(f"{k}={v}" for k, v in kw.items() if k != "lr")


def _params(dtype, shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.normal(size=s)).astype(dtype) for s in shapes]


def _grads(dtype, shapes, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[np.asarray(rng.normal(size=s)).astype(dtype) for s in shapes] for _ in range(steps)]


def _run(cls, kw, backend, dtype, shapes=SHAPES, steps=STEPS, **extra):
    params = _params(dtype, shapes)
    opt = cls(params, backend=backend, **kw, **extra)
    for g in _grads(dtype, shapes, steps):
        opt.step(g)
    return params, opt.state


def _assert_same(a_params, a_state, b_params, b_state, tol):
    for x, y in zip(a_params, b_params):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), **tol)
    for name in a_state:
        assert a_state[name]["step"] == b_state[name]["step"]
        for key in a_state[name]:
            if key != "step":
                np.testing.assert_allclose(a_state[name][key], b_state[name][key], **tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_fused_equals_reference_for_100_steps(case, dtype):
    cls, kw = case
    ref = _run(cls, kw, "reference", dtype)
    fast = _run(cls, kw, "fused", dtype)
    _assert_same(*fast, *ref, TOL[dtype])
    assert not np.array_equal(ref[0][1], _params(dtype)[1])  # the run moved the parameters


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", [CASES[1], CASES[6], CASES[13], CASES[16], CASES[19]], ids=_id)
def test_low_precision_params_with_float32_state(case, dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    dt = adaopt.dtypes.as_dtype(dtype)
    cls, kw = case
    ref = _run(cls, kw, "reference", dt, steps=30)
    fast = _run(cls, kw, "fused", dt, steps=30)
    for name, st in fast[1].items():
        assert all(v.dtype == np.float32 for k, v in st.items() if k != "step")
    # The float32 arithmetic is identical, so the rounded parameters are the same bits.
    for x, y in zip(fast[0], ref[0]):
        assert x.dtype == dt
        assert np.array_equal(x.view(np.uint16), y.view(np.uint16))
    _assert_same([], fast[1], [], ref[1], TOL["float32"])


@pytest.mark.parametrize("case", [CASES[3], CASES[8], CASES[13], CASES[16], CASES[20]], ids=_id)
def test_threaded_kernel(case, monkeypatch):
    monkeypatch.setattr(fused, "PARALLEL_MIN", 16)  # every bucket takes the threaded kernel
    monkeypatch.setattr(fused, "BLOCK", 8)  # and the (33,) and (2,3,4) tensors are split into blocks
    cls, kw = case
    _assert_same(*_run(cls, kw, "fused", "float32", steps=20),
                 *_run(cls, kw, "reference", "float32", steps=20), TOL["float32"])


def test_many_tensors_span_several_chunks():
    shapes = [(i % 5 + 1,) for i in range(3 * fused.CHUNK + 5)]
    kw = dict(lr=0.01, weight_decay=0.01)
    _assert_same(*_run(adaopt.AdamW, kw, "fused", "float32", shapes=shapes, steps=10),
                 *_run(adaopt.AdamW, kw, "reference", "float32", shapes=shapes, steps=10),
                 TOL["float32"])


@pytest.mark.parametrize("parallel", [False, True])
def test_work_items_cover_every_element_once(parallel, monkeypatch):
    """The kernel walks the bucket through its work items: they must cover each tensor's
    elements exactly once, and a threaded group must hold at most BLOCK elements (all
    but the last exactly BLOCK, so the threads get equal shares)."""
    monkeypatch.setattr(fused, "BLOCK", 10)
    rng = np.random.default_rng(3)
    for _ in range(50):
        sizes = [int(x) for x in rng.integers(0, 35, size=rng.integers(1, 12))]
        gs, wj, wa, wb = fused.work_items(sizes, parallel)
        seen = [np.zeros(n, int) for n in sizes]
        for j, a, z in zip(wj, wa, wb):
            assert 0 <= a < z <= sizes[j]
            seen[j][a:z] += 1
        assert all((s == 1).all() for s in seen)
        assert gs[0] == 0 and gs[-1] == len(wj) and (np.diff(gs) > 0).all()
        per_group = [int(sum(wb[i] - wa[i] for i in range(gs[w], gs[w + 1]))) for w in range(len(gs) - 1)]
        if parallel:
            assert all(n == 10 for n in per_group[:-1]) and 0 < per_group[-1] <= 10
        else:
            assert per_group == [n for n in sizes if n]


def test_threaded_kernel_on_mixed_sizes_and_empty_tensors(monkeypatch):
    """Groups straddle tensors (BLOCK 8, tensors of 0-40 elements): every element is
    stepped once and only once, empty tensors included."""
    monkeypatch.setattr(fused, "PARALLEL_MIN", 16)
    monkeypatch.setattr(fused, "BLOCK", 8)
    shapes = [(0,), (3,), (40,), (1,), (0,), (8,), (17,), (2, 0), (5, 5)]
    kw = dict(lr=0.01, weight_decay=0.01)
    _assert_same(*_run(adaopt.AdamW, kw, "fused", "float32", shapes=shapes, steps=10),
                 *_run(adaopt.AdamW, kw, "reference", "float32", shapes=shapes, steps=10),
                 TOL["float32"])


def test_non_contiguous_gradient_is_read_as_its_values():
    """The kernel reads gradients by address: a transposed (non-contiguous) gradient must
    be copied to C order first, not read in its memory order."""
    p = _params("float64", [(3, 4)])[0]
    g = np.asarray(np.random.default_rng(5).normal(size=(4, 3))).T  # shape (3, 4), Fortran order
    assert not g.flags.c_contiguous
    out = {}
    for backend, grad in (("fused", g), ("reference", np.ascontiguousarray(g))):
        x = p.copy()
        opt = adaopt.Adam([x], lr=0.1, backend=backend)
        for _ in range(3):
            opt.step([grad])
        out[backend] = x
    np.testing.assert_allclose(out["fused"], out["reference"], **TOL["float64"])


def test_bucket_refuses_a_gradient_of_the_wrong_size_and_changes_nothing():
    """The kernel trusts the address table, so the bucket checks each gradient's size and
    dtype itself (a short one would be read past its end)."""
    p = np.ones(10, np.float32)
    opt = adaopt.Adam([p], lr=0.1, backend="fused")
    opt.step([np.full(10, 0.5, np.float32)])
    plan, _ = opt._cached_plan()
    bucket = plan.buckets[0]
    before = (p.copy(), {k: v.copy() for k, v in bucket.states[0].items() if k != "step"}, bucket.t)
    for bad in (np.ones(9, np.float32), np.ones(10, np.float64)):
        with pytest.raises(ValueError, match="the kernel needs 10 of float32"):
            bucket.run([bad])
    assert np.array_equal(p, before[0]) and bucket.t == before[2]
    assert all(np.array_equal(bucket.states[0][k], v) for k, v in before[1].items())


def test_gradients_given_by_address():
    """adaopt.torch hands contiguous gradients over as addresses (ints); a bucket takes a
    list of them, or a mix of addresses and arrays, with the same result as arrays."""
    shapes = [(5,), (2, 3), (4,)]
    grads = _grads("float32", shapes, 4)
    out = {}
    for mode in ("arrays", "addresses", "mixed"):
        params = _params("float32", shapes)
        opt = adaopt.AdamW(params, lr=0.01, backend="fused")
        opt.step(grads[0])  # builds the plan
        plan, _ = opt._cached_plan()
        for g in grads[1:]:
            gs = [np.ascontiguousarray(x) for x in g]
            given = {"arrays": gs, "addresses": [x.ctypes.data for x in gs],
                     "mixed": [gs[0].ctypes.data, gs[1], gs[2].ctypes.data]}[mode]
            plan.buckets[0].run(given)
        out[mode] = params
    for mode in ("addresses", "mixed"):
        for a, b in zip(out[mode], out["arrays"]):
            assert np.array_equal(a, b)


def test_read_only_and_writable_gradients_together():
    """numba types read-only arrays apart from writable ones, so a bucket given both (an
    ``np.frombuffer`` gradient) must still read them all."""
    out = {}
    for backend in ("fused", "reference"):
        params = _params("float32", [(3,), (3,), (4,)])
        opt = adaopt.SGD(params, lr=0.5, momentum=0.9, backend=backend)
        for _ in range(3):
            ro = np.frombuffer(np.arange(3, dtype=np.float32).tobytes(), np.float32)
            assert not ro.flags.writeable
            opt.step([ro, np.ones(3, np.float32), np.full(4, 2.0, np.float32)])
        out[backend] = params
    for a, b in zip(out["fused"], out["reference"]):
        np.testing.assert_allclose(a, b, **TOL["float32"])


def test_a_refused_gradient_in_one_bucket_leaves_every_bucket_untouched():
    """The engine checks every bucket's gradients before any kernel writes."""
    a, b = np.zeros(4, np.float32), np.zeros(6, np.float32)
    opt = adaopt.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=1.0, backend="fused")
    opt.step([[np.ones(4, np.float32)], [np.ones(6, np.float32)]])
    plan, hps = opt._cached_plan()
    assert len(plan.buckets) == 2
    before = a.copy(), b.copy()
    with pytest.raises(ValueError, match="the kernel needs 6 of float32"):
        opt._engine.run(plan, [np.ones(4, np.float32), np.ones(5, np.float32)], hps)
    assert np.array_equal(a, before[0]) and np.array_equal(b, before[1])
    assert [bucket.t for bucket in plan.buckets] == [1, 1]


@pytest.mark.parametrize("reset", ["cleared", "dict replaced", "buffer replaced", "buffer zeroed in place"])
def test_state_edited_between_steps_is_seen_by_both_backends(reset):
    """A plan holds the state arrays' addresses; editing ``opt.state`` between steps (not in
    place) must give a new plan, so the kernels see what the reference rule sees. A cleared
    state starts afresh, as a new optimizer would."""
    shapes = [(5,), (2, 3)]
    grads = _grads("float64", shapes, 6)
    out = {}
    for backend in ("fused", "reference"):
        params = _params("float64", shapes)
        opt = adaopt.Adam(params, lr=0.1, backend=backend)
        for k, g in enumerate(grads):
            if k == 3:
                name = next(iter(opt.state))
                if reset == "cleared":
                    opt.state.clear()
                elif reset == "dict replaced":
                    opt.state[name] = {"step": 0}
                elif reset == "buffer replaced":
                    opt.state[name]["exp_avg"] = np.zeros(5)
                else:
                    opt.state[name]["exp_avg"][...] = 0
            opt.step(g)
        out[backend] = params
    for a, b in zip(out["fused"], out["reference"]):
        np.testing.assert_allclose(a, b, **TOL["float64"])
    if reset == "cleared":  # the last three steps are those of a fresh optimizer
        params = _params("float64", shapes)
        first = adaopt.Adam(params, lr=0.1, backend="reference")
        for g in grads[:3]:
            first.step(g)
        fresh = adaopt.Adam(params, lr=0.1, backend="reference")
        for g in grads[3:]:
            fresh.step(g)
        for a, b in zip(out["fused"], params):
            np.testing.assert_allclose(a, b, **TOL["float64"])


def test_groups_and_pure_update_use_the_kernels_too():
    x, y = _params("float64", [(4,), (3,)])
    groups = [{"params": [x]}, {"params": [y], "lr": 0.5, "weight_decay": 0.0}]
    out = {}
    for backend in ("fused", "reference"):
        opt = adaopt.AdamW(lr=0.1, backend=backend)
        state = opt.init(groups)
        params = groups
        for g in _grads("float64", [(4,), (3,)], 10):
            params, state = opt.update([[g[0]], [g[1]]], state, params)
        out[backend] = params
    for a, b in zip(out["fused"], out["reference"]):
        np.testing.assert_allclose(a["params"][0], b["params"][0], **TOL["float64"])
    assert np.array_equal(groups[0]["params"][0], _params("float64", [(4,), (3,)])[0])  # untouched


def test_non_contiguous_parameter_falls_back_to_the_reference_rule():
    base = np.arange(20.0)
    view = base[::2]
    opt = adaopt.Adam([view], lr=0.1, backend="fused")
    ref = np.arange(20.0)[::2].copy()
    ref_opt = adaopt.Adam([ref], lr=0.1, backend="reference")
    for _ in range(5):
        opt.step([np.ones(10)])
        ref_opt.step([np.ones(10)])
    np.testing.assert_allclose(view, ref, rtol=1e-12)
    assert np.array_equal(base[1::2], np.arange(20.0)[1::2])  # the gaps were not written


def test_scalar_values_do_not_recompile():
    hp = dict(adaopt.registry.ADAM.defaults_for("torch"), eps=1e-8, state_dtype=None)
    a = codegen.record(rules.adam, hp, rules.adam.scalars(1, hp))
    b = codegen.record(rules.adam, dict(hp, lr=0.5, betas=(0.8, 0.99)), rules.adam.scalars(7, hp))
    assert a.key == b.key and a.scalars != b.scalars
    c = codegen.record(rules.adam, dict(hp, amsgrad=True), rules.adam.scalars(1, hp))
    assert c.key != a.key and "max_exp_avg_sq" in c.buffers


def test_a_rule_that_branches_on_array_values_cannot_be_traced():
    class Bad:
        __name__ = "bad"

        @staticmethod
        def buffers(hp):
            return {}

        @staticmethod
        def update(p, g, state, hp, s):
            return (p - g if g > 0 else p), {}

    with pytest.raises(TypeError, match="may not branch on array values"):
        codegen.record(Bad, {}, {})


def test_fused_step_makes_no_full_size_temporaries():
    n = 1_000_000
    p, g = np.ones(n, np.float32), np.full(n, 0.5, np.float32)
    state_bytes = 2 * n * 4
    peaks = {}
    for backend in ("fused", "reference"):
        opt = adaopt.AdamW([p], lr=1e-3, backend=backend)
        opt.step([g])  # compile and create state outside the measurement
        tracemalloc.start()
        opt.step([g])
        peaks[backend] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["fused"] <= 0.01 * state_bytes, peaks
    assert peaks["reference"] > state_bytes  # the measurement does see whole-array temporaries


def test_backend_fused_without_numba_says_which_extra(monkeypatch):
    monkeypatch.setattr(fused, "available", lambda: False)
    with pytest.raises(ImportError, match=r"adaopt\[fast\]"):
        adaopt.Adam(lr=1e-3, backend="fused")
    opt = adaopt.Adam([np.ones(3)], lr=1e-3)  # auto falls back to the reference rule
    opt.step([np.ones(3)])
    with pytest.raises(ValueError, match="backend='gpu'"):
        adaopt.Adam(lr=1e-3, backend="gpu")


def test_compiled_kernels_are_cached_on_disk(tmp_path):
    code = ("import numpy as np, adaopt; x = np.ones(5, np.float32); "
            "o = adaopt.RMSprop([x], lr=0.1, centered=True, backend='fused'); o.step([x.copy()]); print(x[0])")
    env = {"ADAOPT_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    files = sorted(p.name for p in (tmp_path / "kernels").iterdir())
    assert any(f.endswith(".py") for f in files) and any(f.endswith(".nbi") for f in
                                                         (p.name for p in (tmp_path / "kernels").rglob("*")))
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert second.stdout == first.stdout


def test_float16_kernels_run_on_a_cpu_without_f16c(tmp_path):
    """NUMBA_CPU_NAME=generic is what numba suggests for a cache shared by several machines, and
    it is the target of an x86 CPU without F16C (before Ivy Bridge / Piledriver, QEMU's default
    CPU model): the fused float16 step must run there too (LLVM's half conversions become
    libcalls numba's JIT leaves unresolved, so kernels/lowp.py converts on the bits there). In a
    child process: it used to crash the interpreter."""
    code = ("import numpy as np, adaopt; p = np.ones(3, np.float16); "
            "o = adaopt.SGD([p], lr=0.5, backend='fused'); o.step([np.ones(3, np.float16)]); print(p[0])")
    env = {"ADAOPT_CACHE_DIR": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "NUMBA_CPU_NAME": "generic", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-500:]}"
    assert run.stdout.strip() == "0.5"


def test_new_state_starts_at_the_parameters_offset_in_its_page():
    """4K aliasing (engine.full_like_page): a large parameter's new state buffers start at its
    offset within a page, whoever allocated it; small ones, and buffers of another element
    size (float32 state of bfloat16 parameters), are plain arrays."""
    from adaopt import dtypes
    from adaopt.engine import PAGE, PAGE_MATCH_MIN

    n = PAGE_MATCH_MIN // 4 + 1000
    raw = np.zeros(4 * n + 2 * PAGE, np.uint8)
    for shift in (0, 16, 64, 1040):
        skip = (shift - raw.ctypes.data) % PAGE
        p = raw[skip:skip + 4 * n].view(np.float32).reshape(-1, 8)[: n // 8]
        p[...] = 1.0
        opt = adaopt.AdamW([p], lr=1e-3)
        opt.step([np.ones_like(p)])
        st = next(iter(opt.state.values()))
        for key in ("exp_avg", "exp_avg_sq"):
            assert st[key].ctypes.data % PAGE == shift, (shift, key)
            assert st[key].shape == p.shape and st[key].flags.c_contiguous
        assert np.all(p < 1.0) and np.all(st["exp_avg_sq"] > 0)
    small = np.ones(100, np.float32)
    opt = adaopt.AdamW([small], lr=1e-3)
    opt.step([np.ones_like(small)])
    assert next(iter(opt.state.values()))["exp_avg"].shape == (100,)
    bf = np.ones(n, dtypes.as_dtype("bfloat16"))
    opt = adaopt.AdamW([bf], lr=1e-3)
    opt.step([np.ones_like(bf)])
    assert next(iter(opt.state.values()))["exp_avg"].dtype == np.float32
