"""The rules run on torch tensors (the path CUDA tensors take), checked on CPU against torch.optim.

float64 must agree to rtol 1e-10. float32: rtol 1e-5, or within 4x of how far torch's own
second implementation of the run (fused, or from a start one ulp up) lands from its for-loop
run, where that is more (tests/torch_spread.py says why).
"""

import copy

import pytest

torch = pytest.importorskip("torch")

import adaopt.torch as at  # noqa: E402
from torch_spread import assert_within_spread, nudge_, second_run  # noqa: E402

CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01, maximize=True)),
    ("AdamW", dict(lr=0.01)),
]
STEPS = 100


def _setup(dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)
    X, y = torch.randn(40, 12, dtype=dtype), torch.randint(0, 3, (40,))
    return model, X, y


def _train(model, opt, X, y, sign):
    opt.zero_grad()
    (sign * torch.nn.functional.cross_entropy(model(X), y)).backward()
    opt.step()


def _torch_second(name, kwargs, dtype):
    """torch's second implementation of the run (torch_spread.second_run): the final parameters."""
    flags, nudge = second_run(name)
    model, X, y = _setup(dtype)
    if nudge:
        nudge_(model.parameters())
    opt = getattr(torch.optim, name)(model.parameters(), **flags, **kwargs)
    for _ in range(STEPS):
        _train(model, opt, X, y, -1.0 if kwargs.get("maximize") else 1.0)
    return list(model.parameters())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name, kwargs", CASES, ids=lambda c: c if isinstance(c, str) else None)
def test_tensor_backend_matches_torch_optim(name, kwargs, dtype):
    model, X, y = _setup(dtype)
    twin = copy.deepcopy(model)
    ours = getattr(at, name)(model.parameters(), backend="tensor", **kwargs)
    ref = getattr(torch.optim, name)(twin.parameters(), foreach=False, **kwargs)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    start = [p.detach().clone() for p in model.parameters()]
    for _ in range(STEPS):
        for m, o in ((model, ours), (twin, ref)):
            _train(m, o, X, y, sign)
    if dtype == torch.float64:
        for a, b in zip(model.parameters(), twin.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    else:
        assert_within_spread(list(model.parameters()), list(twin.parameters()),
                             lambda: _torch_second(name, kwargs, dtype), rtol=1e-5, atol=1e-6, what=name)
    for a, s in zip(model.parameters(), start):
        assert not torch.equal(a, s)
    state = ours.state[next(model.parameters())]
    assert all(v.dtype == dtype for k, v in state.items() if k != "step")
