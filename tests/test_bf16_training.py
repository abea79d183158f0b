"""bfloat16 training on the digits MLP: compensated summation and stochastic rounding
recover the float32 loss; plain bfloat16 loses the small updates and stalls."""

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ml_dtypes")
datasets = pytest.importorskip("sklearn.datasets")

import adaopt.torch as at  # noqa: E402

STEPS = 400


@pytest.fixture(scope="module")
def problem():
    d = datasets.load_digits()
    X = (d.data - d.data.mean(0)) / (d.data.std(0) + 1e-8)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    return torch.tensor(X[:512], dtype=torch.float32), torch.tensor(d.target[:512]), model


def _final_loss(problem, dtype, name, lr, **kw):
    X, y, base = problem
    model = copy.deepcopy(base).to(dtype)
    opt = getattr(at, name)(model.parameters(), lr=lr, **kw)
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X.to(dtype)).float(), y).backward()
        opt.step()
    if kw.get("kahan"):
        assert all(opt.state[p]["kahan_comp"].dtype == torch.bfloat16 for p in model.parameters())
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model.float()(X), y).item()


# Learning rates small enough that most updates are below half a bfloat16 ulp of the weights.
@pytest.mark.parametrize("name, lr, kw", [
    ("AdamW", 1e-4, {}), ("RMSprop", 1e-4, {}), ("Adagrad", 3e-3, {}), ("SGD", 0.02, dict(momentum=0.5)),
])
def test_kahan_and_stochastic_rounding_recover_the_float32_loss(problem, name, lr, kw):
    fp32 = _final_loss(problem, torch.float32, name, lr, **kw)
    plain = _final_loss(problem, torch.bfloat16, name, lr, **kw)
    kahan = _final_loss(problem, torch.bfloat16, name, lr, kahan=True, **kw)
    sr = _final_loss(problem, torch.bfloat16, name, lr, stochastic_rounding=True, **kw)
    print(f"{name}: fp32 {fp32:.4f}  bf16 {plain:.4f}  kahan {kahan:.4f}  stochastic {sr:.4f}")
    assert abs(kahan / fp32 - 1) < 0.02
    assert abs(sr / fp32 - 1) < 0.02
    assert plain > 1.2 * fp32  # plain bfloat16 is measurably worse


def test_kahan_and_stochastic_rounding_are_exclusive_and_sr_is_bfloat16_only():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))
    with pytest.raises(ValueError, match="choose one"):
        at.Adam([p], kahan=True, stochastic_rounding=True)
    q = torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="bfloat16"):  # refused at construction, before any step
        at.Adam([q, p], stochastic_rounding=True)
    at.Adam([q], stochastic_rounding=True)  # bfloat16 alone is fine
