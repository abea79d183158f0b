"""Gradient release: ``opt.step_in_backward(model)`` steps inside backward, bucket by bucket.

The reference is the plain loop ``loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)``
with the same optimizer: each element goes through the same fused kernel arithmetic, so
parameters and state must be equal bit for bit (bucket sizes only regroup the tensors). Against
torch.optim the tolerance is float64 rounding (rtol 1e-10), as in test_torch_frontend.py.

The model is a tiny LM-like net with tied embeddings, a LayerNorm, two param groups with
different lr and weight decay, and an optional branch that a batch may leave unused.
"""

from __future__ import annotations

import copy
import warnings

import pytest

torch = pytest.importorskip("torch")

import adaopt.torch as at  # noqa: E402

nn = torch.nn
F = torch.nn.functional

torch.set_num_threads(1)


class Net(nn.Module):
    def __init__(self, vocab=40, d=12):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.hidden = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.side = nn.Linear(d, d)  # used only when the batch asks for it
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, tokens, side=False):
        x = torch.tanh(self.hidden(self.embed(tokens)))
        if side:
            x = x + self.side(x)
        return self.head(self.norm(x))


def make(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = Net().to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    batches = [torch.randint(0, 40, (8, 7), generator=g) for _ in range(6)]
    return model, batches


def groups(model):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0, "lr": 3e-3}]


def loss_of(model, batch, k=0):
    logits = model(batch[:, :-1], side=k % 3 == 1)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def plain(model, opt, batches, steps, sched=None, accumulate=1):
    for k in range(steps):
        for j in range(accumulate):
            loss_of(model, batches[(k * accumulate + j) % len(batches)], k * accumulate + j).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if sched is not None:
            sched.step()


def released(model, opt, batches, steps, sched=None, accumulate=1):
    for k in range(steps):
        for j in range(accumulate):
            loss_of(model, batches[(k * accumulate + j) % len(batches)], k * accumulate + j).backward()
        assert all(p.grad is None for p in model.parameters())
        if sched is not None:
            sched.step()


def assert_same(m1, o1, m2, o2):
    for (name, a), b in zip(m1.named_parameters(), m2.parameters()):
        assert torch.equal(a, b), name
    s1, s2 = o1.state_dict(), o2.state_dict()
    assert [{k: g[k] for k in g1} for g1, g in zip(s1["param_groups"], s2["param_groups"])] == s1["param_groups"]
    for k, st in s1["state"].items():
        for key, v in st.items():
            assert torch.equal(v, s2["state"][k][key]), (k, key)


@pytest.mark.parametrize("bucket_bytes", [1, 2000, at.backward.BUCKET_BYTES])
@pytest.mark.parametrize("family", ["AdamW", "SGD", "RMSprop"])
def test_equals_plain_step_bit_for_bit(family, bucket_bytes):
    kw = {"SGD": dict(lr=0.05, momentum=0.9, nesterov=True)}.get(family, dict(lr=1e-2))
    m1, batches = make()
    m2 = copy.deepcopy(m1)
    o1, o2 = getattr(at, family)(groups(m1), **kw), getattr(at, family)(groups(m2), **kw)
    s1 = torch.optim.lr_scheduler.OneCycleLR(o1, max_lr=0.02, total_steps=20)
    s2 = torch.optim.lr_scheduler.OneCycleLR(o2, max_lr=0.02, total_steps=20)
    handle = o2.step_in_backward(m2, bucket_bytes=bucket_bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "lr_scheduler.step() before optimizer.step()"
        plain(m1, o1, batches, 9, s1)
        released(m2, o2, batches, 9, s2)
    assert_same(m1, o1, m2, o2)
    assert handle.passes == 9
    if bucket_bytes == 1:
        assert len(handle._slots) == len(list(m2.parameters()))


def test_equals_torch_optim_float64():
    m1, batches = make(dtype=torch.float64)
    m2 = copy.deepcopy(m1)
    o1 = torch.optim.AdamW(groups(m1), lr=1e-2, foreach=False)
    o2 = at.AdamW(groups(m2), lr=1e-2)
    o2.step_in_backward(m2, bucket_bytes=1500)
    plain(m1, o1, batches, 12)
    released(m2, o2, batches, 12)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_accumulate_sums_micro_batches_and_steps_every_nth_pass():
    m1, batches = make()
    m2 = copy.deepcopy(m1)
    o1, o2 = at.Adam(groups(m1), lr=1e-2), at.Adam(groups(m2), lr=1e-2)
    handle = o2.step_in_backward(m2, bucket_bytes=600, accumulate=3)
    before = [p.detach().clone() for p in m2.parameters()]
    for j in range(2):  # two passes of three: nothing changes, the gradients add up
        loss_of(m2, batches[j], j).backward()
    assert all(torch.equal(a, b) for a, b in zip(before, m2.parameters()))
    assert all(p.grad is not None for p in m2.parameters() if p is not m2.side.weight and p is not m2.side.bias)
    loss_of(m2, batches[2], 2).backward()
    assert all(p.grad is None for p in m2.parameters())
    for k in range(1, 4):
        for j in range(3):
            loss_of(m2, batches[(3 * k + j) % 6], 3 * k + j).backward()
    plain(m1, o1, batches, 4, accumulate=3)
    assert_same(m1, o1, m2, o2)
    assert handle.passes == 12


def test_unused_parameters_keep_still_and_a_partial_bucket_is_stepped_at_the_end():
    m1, batches = make()
    m2 = copy.deepcopy(m1)
    o1, o2 = at.AdamW(groups(m1), lr=1e-2), at.AdamW(groups(m2), lr=1e-2)
    o2.step_in_backward(m2, bucket_bytes=10**9)  # one bucket: the unused side branch never completes it
    side = m2.side.weight.detach().clone()
    loss_of(m2, batches[0], 0).backward()
    assert torch.equal(m2.side.weight, side)
    assert all(p.grad is None for p in m2.parameters())
    assert not torch.equal(m2.hidden.weight, m1.hidden.weight)
    plain(m1, o1, batches, 1)
    assert_same(m1, o1, m2, o2)


def test_peak_gradient_memory_is_about_one_bucket():
    model, batches = make()
    opt = at.AdamW(model.parameters(), lr=1e-2)
    params = list(model.parameters())
    peak = [0]

    def count(_):
        peak[0] = max(peak[0], sum(p.grad.nbytes for p in params if p.grad is not None))

    for p in params:  # registered first, so it runs before the step frees anything
        p.register_post_accumulate_grad_hook(count)
    largest = max(p.nbytes for p in params)
    loss_of(model, batches[0]).backward()
    total = sum(p.grad.nbytes for p in params if p.grad is not None)
    assert peak[0] == total  # plain backward: every gradient alive at the end
    opt.zero_grad(set_to_none=True)
    opt.step_in_backward(model, bucket_bytes=1)
    for k in range(2):  # the first pass buckets in reverse registration order, the next as observed
        peak[0] = 0
        loss_of(model, batches[1]).backward()
        assert peak[0] <= largest < total  # one bucket is one tensor here


def test_state_dict_resume_and_remove():
    m1, batches = make()
    m2 = copy.deepcopy(m1)
    o1, o2 = at.AdamW(groups(m1), lr=1e-2), at.AdamW(groups(m2), lr=1e-2)
    handle = o2.step_in_backward(m2, bucket_bytes=800)
    plain(m1, o1, batches, 3)
    released(m2, o2, batches, 3)
    saved = copy.deepcopy(o2.state_dict())
    o3 = at.AdamW(groups(m2), lr=1e-2)  # a new optimizer resumes the run, still in backward
    handle.remove()
    o3.load_state_dict(saved)
    o3.step_in_backward(m2, bucket_bytes=300)
    plain(m1, o1, batches, 2)
    released(m2, o3, batches, 2)
    assert_same(m1, o1, m2, o3)
    o3._grad_release.remove()  # off again: grads stay, opt.step() steps them
    loss_of(m2, batches[0]).backward()
    assert all(p.grad is not None for p in (m2.hidden.weight, m2.embed.weight))
    o3.step()
    o3.zero_grad()
    loss_of(m1, batches[0]).backward()
    o1.step()
    assert_same(m1, o1, m2, o3)


def test_step_hooks_run_once_per_pass_and_step_after_release_is_a_no_op():
    model, batches = make()
    opt = at.AdamW(model.parameters(), lr=1e-2)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    opt.step_in_backward(model, bucket_bytes=1)
    loss_of(model, batches[0]).backward()
    assert calls == ["pre", "post"]
    after = [p.detach().clone() for p in model.parameters()]
    opt.step()  # no gradients left: changes nothing
    opt.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(after, model.parameters()))


def test_refused_at_registration():
    model, _ = make()
    opt = at.AdamW(list(model.parameters())[:-1], lr=1e-2)
    with pytest.raises(ValueError, match=r"parameter \S+ \(shape .*\) is not in this optimizer"):
        opt.step_in_backward(model)
    opt = at.AdamW(model.parameters(), lr=1e-2)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match=f"bucket_bytes must be a positive int, got {bad!r}"):
            opt.step_in_backward(model, bucket_bytes=bad)
    with pytest.raises(ValueError, match="accumulate must be a positive int, got 0"):
        opt.step_in_backward(model, accumulate=0)
    with pytest.raises(TypeError, match=r"params\[0\] is a str"):
        opt.step_in_backward(["w"])
    handle = opt.step_in_backward(model)
    with pytest.raises(RuntimeError, match="already steps in backward"):
        opt.step_in_backward(model)
    with pytest.raises(RuntimeError, match="already stepped in backward .by another step_in_backward"):
        at.AdamW(model.parameters()).step_in_backward(model)
    handle.remove()
    with pytest.raises(ValueError, match="on_nonfinite='skip' needs every gradient"):
        at.AdamW(model.parameters(), on_nonfinite="skip").step_in_backward(model)
    sparse = nn.Sequential(nn.Embedding(10, 3, sparse=True))
    with pytest.raises(NotImplementedError, match=r"0 makes sparse gradients"):
        at.Adagrad(sparse.parameters()).step_in_backward(sparse)


def test_torch_in_backward_optimizers_are_refused():
    from torch.distributed.optim import _apply_optimizer_in_backward

    model, _ = make()
    _apply_optimizer_in_backward(torch.optim.SGD, model.parameters(), {"lr": 0.1})
    with pytest.raises(RuntimeError, match="by torch _apply_optimizer_in_backward"):
        at.AdamW(model.parameters()).step_in_backward(model)


def test_ddp_module_is_refused(tmp_path):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not built")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(nn.Linear(3, 2))
        with pytest.raises(TypeError, match="before DDP's all-reduce"):
            at.AdamW(ddp.parameters()).step_in_backward(ddp)
    finally:
        dist.destroy_process_group()


def test_the_monitor_refuses_an_optimizer_whose_gradients_are_released():
    """Gradient release frees each .grad inside backward, before the Monitor's step hook reads
    it: the Monitor recorded a zero gradient (and called a healthy run 'dead units'). It is
    refused, whichever of the two is set up first."""
    from adaopt.diagnostics import Monitor

    model, batches = make()
    opt = at.AdamW(groups(model), lr=1e-2)
    handle = opt.step_in_backward(model)
    with pytest.raises(RuntimeError, match="step_in_backward"):
        Monitor(opt)
    handle.remove()
    mon = Monitor(opt)  # without release it watches
    handle = opt.step_in_backward(model)
    with pytest.raises(RuntimeError, match="step_in_backward"):
        loss_of(model, batches[0]).backward()
        mon.log(1.0)
