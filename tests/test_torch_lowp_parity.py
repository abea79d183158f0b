"""bfloat16/float16 parameters against torch.optim with the same arithmetic.

adaopt keeps float32 state for 16-bit parameters and rounds the updated parameter to
its dtype. The reference is torch.optim stepping a float32 copy of the parameters
that is rounded to the 16-bit dtype after every step, with the gradients of the
16-bit model. Stated tolerance: one 16-bit ulp (rtol 2^-7 for bfloat16, 2^-10 for
float16), since a float32 result within an ulp of a rounding boundary may round
either way; in practice almost every entry is identical.
"""

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ml_dtypes")

import adaopt.torch as at  # noqa: E402

STEPS = 30
CASES = [("SGD", dict(lr=0.05, momentum=0.9)), ("Adagrad", dict(lr=0.05)),
         ("RMSprop", dict(lr=1e-3, centered=True)), ("Adam", dict(lr=1e-3, amsgrad=True)),
         ("AdamW", dict(lr=1e-3))]
ULP = {torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name, kwargs", CASES, ids=[c[0] for c in CASES])
def test_16bit_params_match_torch_with_float32_master_arithmetic(name, kwargs, dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)
    twin = copy.deepcopy(model)
    master = [p.detach().float().clone().requires_grad_() for p in twin.parameters()]
    ours = getattr(at, name)(model.parameters(), **kwargs)
    ref = getattr(torch.optim, name)(master, foreach=False, **kwargs)
    X, y = torch.randn(40, 12).to(dtype), torch.randint(0, 3, (40,))
    for _ in range(STEPS):
        ours.zero_grad()
        torch.nn.functional.cross_entropy(model(X).float(), y).backward()
        ours.step()
        twin.zero_grad()
        torch.nn.functional.cross_entropy(twin(X).float(), y).backward()
        for m, p in zip(master, twin.parameters()):
            m.grad = p.grad.float()
        ref.step()
        with torch.no_grad():
            for m, p in zip(master, twin.parameters()):
                p.copy_(m.to(dtype))
                m.copy_(p.float())  # the float32 copy holds exactly the rounded 16-bit value
    same = total = 0
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a.float(), b.float(), rtol=ULP[dtype], atol=ULP[dtype] * 1e-2)
        same += (a == b).sum().item()
        total += a.numel()
    assert same / total > 0.95, same / total
    assert all(v.dtype == torch.float32 for k, v in ours.state[next(model.parameters())].items()
               if k != "step")
