"""Every registered optimizer, from one case table (tests/cases.py).

For each family of :data:`adaopt.registry.FAMILIES`: the rule module keeps the contract;
the constructor is torch.optim's (argument names, order, defaults); every case matches
torch.optim on a small tanh MLP (float64 to 1e-10; float32 within torch's own spread,
tests/torch_spread.py); state_dicts move between torch.optim and adaopt.torch in both
directions and the runs continue alike; the fused kernels equal the reference rule bit
for bit (float64, float32, bfloat16); every hyperparameter refuses a bad value, naming
it; a lab sweep runs it, batched equal to one by one; a OneCycleLR that cycles beta1
gives torch's numbers. A family added to the registry without cases fails the first test.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

import adaopt
from adaopt import registry, rules
from cases import CASES, rows, torch_rows

torch = pytest.importorskip("torch")
import adaopt.torch as at  # noqa: E402
from torch_spread import assert_within_spread, nudge_, second_run  # noqa: E402

nn = torch.nn
STEPS = 60


def test_every_registered_optimizer_has_cases():
    assert set(CASES) == set(registry.FAMILIES), "each registry entry needs rows in tests/cases.py"
    for key, cases in CASES.items():
        assert cases and len({cid for cid, _ in cases}) == len(cases), key


@pytest.mark.parametrize("key", list(registry.FAMILIES))
def test_rule_keeps_the_contract(key):
    rule = registry.FAMILIES[key].rule
    assert isinstance(rule, rules.Rule), f"{rule.__name__} lacks one of buffers, scalars, update, effective_lr"
    assert rule.__doc__ and "math::" in rule.__doc__, f"{rule.__name__}: the docstring carries the update"
    hp = registry.FAMILIES[key].defaults_for("torch")
    if hasattr(rule, "scalar_state"):
        assert all(isinstance(v, np.generic) for v in rule.scalar_state(hp).values())


@pytest.mark.parametrize("key", [k for k, f in registry.FAMILIES.items()])
def test_constructor_is_torch_optims(key):
    import inspect

    entry = registry.FAMILIES[key]
    theirs = inspect.signature(getattr(torch.optim, entry.torch_name or entry.name)).parameters
    ours = inspect.signature(at.CLASSES[key]).parameters
    positional = [n for n, p in theirs.items() if p.kind == p.POSITIONAL_OR_KEYWORD and n != "params"]
    assert list(entry.args) == positional
    assert set(entry.kwargs) == {n for n, p in theirs.items() if p.kind == p.KEYWORD_ONLY}
    for name, p in theirs.items():
        if name in entry.defaults:
            assert entry.defaults[name] == p.default, name
            assert ours[name].default == p.default, name
    assert list(ours)[:len(positional) + 1] == ["params", *positional]


# ---------------------------------------------------------------------- parity with torch.optim

def _data(dtype):
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.standard_normal((96, 12)), dtype=dtype)
    y = torch.tensor(rng.integers(0, 5, 96))
    return X, y


def _model(dtype):
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 5))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.tensor(rng.uniform(-0.3, 0.3, tuple(p.shape))))
    return model.to(dtype)


def _train(model, opt, data, steps, scheduler=None):
    X, y = data
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return [p.detach().clone() for p in model.parameters()]


def _torch_class(key):
    entry = registry.FAMILIES[key]
    return getattr(torch.optim, entry.torch_name or entry.name)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("key, cid, kw", torch_rows(), ids=[f"{k}-{c}" for k, c, _ in torch_rows()])
def test_matches_torch_optim(key, cid, kw, dtype):
    data = _data(dtype)
    ref_model = _model(dtype)
    ref = _train(ref_model, _torch_class(key)(ref_model.parameters(), foreach=False, **kw), data, STEPS)
    ours_model = _model(dtype)
    ours = _train(ours_model, at.CLASSES[key](ours_model.parameters(), **kw), data, STEPS)
    assert any(not torch.equal(a, b) for a, b in zip(ref, [p.detach() for p in _model(dtype).parameters()]))
    if dtype == torch.float64:
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        return

    def other():
        flags, nudge = second_run(_torch_class(key).__name__)
        model = _model(dtype)
        if nudge:
            nudge_(model.parameters())
        return _train(model, _torch_class(key)(model.parameters(), **{**kw, **flags}), data, STEPS)

    assert_within_spread(ours, ref, other, rtol=1e-5, atol=1e-6, what=f"{key}-{cid}")


@pytest.mark.parametrize("direction", ["torch->adaopt", "adaopt->torch"])
@pytest.mark.parametrize("key, cid, kw", torch_rows(), ids=[f"{k}-{c}" for k, c, _ in torch_rows()])
def test_state_dict_moves_between_torch_and_adaopt(key, cid, kw, direction):
    """Half a run with one, saved (torch.save, weights_only load), the rest with the other:
    the same parameters as the first one running on."""
    dtype = torch.float64
    data = _data(dtype)
    first_cls, second_cls = ((_torch_class(key), at.CLASSES[key]) if direction == "torch->adaopt"
                             else (at.CLASSES[key], _torch_class(key)))
    model = _model(dtype)
    opt = first_cls(model.parameters(), **kw)
    _train(model, opt, data, STEPS // 2)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    straight = _train(model, opt, data, STEPS // 2)
    other_model = _model(dtype)
    other_model.load_state_dict(saved["model"])
    other = second_cls(other_model.parameters(), **kw)
    other.load_state_dict(saved["opt"])
    resumed = _train(other_model, other, data, STEPS // 2)
    for a, b in zip(resumed, straight):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


BETA_FAMILIES = [k for k, f in registry.FAMILIES.items() if "betas" in f.defaults]


@pytest.mark.parametrize("key", BETA_FAMILIES)
def test_onecycle_that_cycles_beta1_matches_torch(key):
    """OneCycleLR moves lr and beta1 every step; NAdam's product of momentum factors must
    multiply in the beta1 actually used (it is state, not recomputed)."""
    dtype = torch.float64
    data = _data(dtype)
    out = []
    for cls in (_torch_class(key), at.CLASSES[key]):
        model = _model(dtype)
        opt = cls(model.parameters(), **({"foreach": False} if cls is _torch_class(key) else {}))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.02, total_steps=STEPS + 1)
        out.append(_train(model, opt, data, STEPS, scheduler=sched))
    for a, b in zip(out[1], out[0]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- the NumPy frontend


def _numpy_run(key, kw, dtype, backend, steps=12):
    import adaopt.dtypes as d

    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal((7, 5)).astype(np.float32).astype(d.as_dtype(dtype)),
              "b": rng.standard_normal(11).astype(np.float32).astype(d.as_dtype(dtype))}
    opt = adaopt.optim.CLASSES[key](params, backend=backend, **kw)
    for t in range(steps):
        noise = np.random.default_rng(100 + t)
        grads = {k: (2 * (v.astype(np.float64) - 0.5) + 0.3 * noise.standard_normal(v.shape)).astype(v.dtype)
                 for k, v in params.items()}
        opt.step(grads)
    return params, opt


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("key, cid, kw", rows(), ids=[f"{k}-{c}" for k, c, _ in rows()])
def test_fused_kernel_equals_the_reference_rule(key, cid, kw, dtype):
    pytest.importorskip("numba")
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    fused, opt = _numpy_run(key, kw, dtype, "fused")
    assert opt._plan.plan.buckets, "the fused path must have taken these parameters"
    reference, _ = _numpy_run(key, kw, dtype, "reference")
    start, _ = _numpy_run(key, kw, dtype, "reference", steps=0)
    for k in fused:
        np.testing.assert_array_equal(fused[k].view(np.uint8), reference[k].view(np.uint8), err_msg=k)
    assert any(not np.array_equal(fused[k], start[k]) for k in fused), "the run must move the parameters"


@pytest.mark.parametrize("frontend", ["numpy", "torch"])
@pytest.mark.parametrize("key", list(registry.FAMILIES))
def test_every_hyperparameter_refuses_a_bad_value_naming_it(key, frontend):
    entry = registry.FAMILIES[key]
    for name in entry.hyperparameters:
        if frontend == "numpy":
            build = lambda **kw: adaopt.optim.CLASSES[key]([np.zeros(3)], **kw)  # noqa: E731
        else:
            build = lambda **kw: at.CLASSES[key]([nn.Parameter(torch.zeros(3))], **kw)  # noqa: E731
        with pytest.raises(ValueError, match=f"^{name}='nope' is invalid"):
            build(**{name: "nope"})


@pytest.mark.parametrize("key", list(registry.FAMILIES))
def test_the_lab_sweeps_every_family_batched_as_one_by_one(key):
    from adaopt.lab.sweep import run_sweep, sweep_one_by_one

    lrs = (1e-3, 1e-2)
    batched = run_sweep("quadratic", key, lrs, (0, 1), steps=30)
    single = sweep_one_by_one("quadratic", key, lrs, (0, 1), steps=30)
    assert np.isfinite(batched.final_loss).all()
    np.testing.assert_array_equal(batched.final_loss, [s.final_loss[0] for s in single])
