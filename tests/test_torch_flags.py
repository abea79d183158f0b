"""What torch users pass to an optimizer, and torch.compile around a training step.

A copied ``AdamW(..., fused=True)`` failed; tensor ``lr`` and ``betas`` (torch.compile and
capturable recipes) were refused; complex parameters were refused at the first step; a
``torch.compile``d training step crashed inside numba's dispatcher. adaopt.torch takes
what it can honour (``fused``/``foreach`` ask for speed, and adaopt's path is the fast
one; tensors are values; complex parameters step as their real view, as torch does) and
refuses the rest at construction, saying what to use instead.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
import adaopt.torch as at  # noqa: E402
from adaopt import registry  # noqa: E402

nn = torch.nn


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def _train(model, opt, steps=15):
    torch.manual_seed(1)
    X, y = torch.randn(32, 8, dtype=torch.float64), torch.randint(0, 3, (32,))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("flags", [dict(fused=True), dict(foreach=True), dict(fused=False, foreach=False)])
def test_fused_and_foreach_are_taken_and_kept(flags):
    model = _model()
    ours = at.AdamW(model.parameters(), lr=1e-2, **flags)
    assert all(ours.param_groups[0][k] == v for k, v in flags.items())
    plain = _model()
    assert all(torch.equal(a, b) for a, b in zip(_train(model, ours), _train(plain, at.AdamW(plain.parameters(), lr=1e-2))))
    theirs = torch.optim.AdamW(_model().parameters(), lr=1e-2, **flags)
    theirs.load_state_dict(ours.state_dict())  # and torch reads the flags back
    assert all(theirs.param_groups[0][k] == v for k, v in flags.items())


@pytest.mark.parametrize("key", sorted(registry.FAMILIES))
def test_a_group_holds_torchs_flags_with_torchs_defaults(key):
    """Code that reads ``group["fused"]`` (a trial's) got a KeyError where torch gives None."""
    family = registry.FAMILIES[key]
    ours = getattr(at, family.name)(_model().parameters())
    theirs = getattr(torch.optim, family.torch_name or family.name)(_model().parameters())
    for flag in registry.TORCH_FLAGS:
        assert ours.param_groups[0].get(flag, "absent") == theirs.param_groups[0].get(flag, "absent"), flag


def test_fused_and_foreach_together_are_refused_as_torch_refuses_them():
    with pytest.raises(RuntimeError) as theirs:
        torch.optim.AdamW(_model().parameters(), fused=True, foreach=True)
    with pytest.raises(RuntimeError) as ours:
        at.AdamW(_model().parameters(), fused=True, foreach=True)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("flag, hint", [("differentiable", "torch.optim with differentiable=True"),
                                        ("capturable", "CUDA graph")])
def test_what_cannot_be_honoured_is_refused_at_construction_saying_what_instead(flag, hint):
    with pytest.raises(ValueError, match=hint):
        at.Adam(_model().parameters(), **{flag: True})


def test_tensor_lr_and_betas_are_values_and_stay_tensors_in_the_groups():
    model, ref = _model(), _model()
    lr, betas = torch.tensor(0.01), (torch.tensor(0.8), torch.tensor(0.99))
    opt = at.Adam(model.parameters(), lr=lr, betas=betas)
    assert torch.is_tensor(opt.param_groups[0]["lr"]) and torch.is_tensor(opt.param_groups[0]["betas"][0])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    ref_opt = at.Adam(ref.parameters(), lr=float(lr), betas=tuple(float(b) for b in betas))  # float32 values
    ref_sched = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=5, gamma=0.5)
    for (m, o, s) in ((model, opt, sched), (ref, ref_opt, ref_sched)):
        for _ in range(3):
            _train(m, o, steps=4)
            s.step()
    assert float(opt.param_groups[0]["lr"]) == ref_opt.param_groups[0]["lr"]
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.equal(a, b)


COMPLEX = [(k, dict(momentum=0.9) if k in ("sgd", "rmsprop") else {}) for k in registry.FAMILIES]


@pytest.mark.parametrize("backend", ["auto", "tensor"])
@pytest.mark.parametrize("key, kw", COMPLEX, ids=[k for k, _ in COMPLEX])
def test_complex_parameters_step_as_their_real_view_as_torch_does(key, kw, backend):
    entry = registry.FAMILIES[key]
    torch.manual_seed(0)
    start = torch.randn(40, dtype=torch.complex128)
    a, b = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    theirs = getattr(torch.optim, entry.torch_name or entry.name)([a], lr=0.01, foreach=False, **kw)
    ours = at.CLASSES[key]([b], lr=0.01, backend=backend, **kw)
    for t in range(15):
        g = a.detach() - (1 + 2j) + 0.1j * torch.cos(torch.arange(40.0) * t)
        a.grad, b.grad = g.clone(), g.clone()
        theirs.step()
        ours.step()
    assert not torch.equal(a.detach(), start)
    torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-10, atol=1e-12)
    buffers = [v for k, v in ours.state[b].items() if k != "step" and v.dim() > 0]
    assert buffers and all(v.is_complex() for v in buffers), "state keeps torch's complex layout"
    again = getattr(torch.optim, entry.torch_name or entry.name)([nn.Parameter(b.detach().clone())], lr=0.01, **kw)
    again.load_state_dict(copy.deepcopy(ours.state_dict()))


def test_a_compiled_training_step_has_one_opaque_call_for_the_optimizer_and_the_eager_numbers():
    from torch._dynamo.utils import counters

    def make():
        model = _model().float()
        return model, at.AdamW(model.parameters(), lr=1e-2)

    torch.manual_seed(3)
    X, y = torch.randn(32, 8), torch.randint(0, 3, (32,))

    def train_step(model, opt):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        return loss

    torch._dynamo.reset()
    counters.clear()
    model, opt = make()
    # dynamo decides where the graph breaks; inductor would only add its codegen (16 s cold) to the same graphs
    compiled = torch.compile(train_step, backend="aot_eager")
    for _ in range(4):
        compiled(model, opt)
    breaks = [reason for reason in counters["graph_break"] if "adaopt" in reason or "numba" in reason
              or "Optimizer.step" in reason]
    assert len(breaks) == 1 and "torch.compiler.disable" in breaks[0], breaks
    eager_model, eager_opt = make()
    for _ in range(4):
        train_step(eager_model, eager_opt)
    for a, b in zip(model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()
