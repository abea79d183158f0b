"""The rules run on torch tensors (the path CUDA tensors take), checked on CPU against torch.optim."""

import copy

import pytest

torch = pytest.importorskip("torch")

import adaopt.torch as at  # noqa: E402

CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01, maximize=True)),
    ("AdamW", dict(lr=0.01)),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name, kwargs", CASES, ids=lambda c: c if isinstance(c, str) else None)
def test_tensor_backend_matches_torch_optim(name, kwargs, dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)
    twin = copy.deepcopy(model)
    ours = getattr(at, name)(model.parameters(), backend="tensor", **kwargs)
    ref = getattr(torch.optim, name)(twin.parameters(), foreach=False, **kwargs)
    X, y = torch.randn(40, 12, dtype=dtype), torch.randint(0, 3, (40,))
    sign = -1.0 if kwargs.get("maximize") else 1.0
    start = [p.detach().clone() for p in model.parameters()]
    for _ in range(100):
        for m, o in ((model, ours), (twin, ref)):
            o.zero_grad()
            (sign * torch.nn.functional.cross_entropy(m(X), y)).backward()
            o.step()
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for a, b, s in zip(model.parameters(), twin.parameters(), start):
        torch.testing.assert_close(a, b, **tol)
        assert not torch.equal(a, s)
    state = ours.state[next(model.parameters())]
    assert all(v.dtype == dtype for k, v in state.items() if k != "step")
