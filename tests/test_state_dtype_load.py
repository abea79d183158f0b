"""A state_dtype the loading optimizer was built with is kept on load, and the moments are cast to it.

A new user's trial: ``adaopt.torch.AdamW(..., state_dtype="bfloat16")`` loaded a ``torch.optim.AdamW``
state_dict and went on with float32 moments (4 bytes a moment more than asked) while its group
still said ``'bfloat16'``; an adaopt float32 state_dict reset the group's state_dtype to None.
int8 already quantized on load. An optimizer built without a state_dtype keeps the saved
state's dtypes (a bf16-state run resumes as it was)."""

from __future__ import annotations

import numpy as np
import pytest

import adaopt

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


def _numpy_run(steps, **kw):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(300).astype(np.float32)
    opt = adaopt.AdamW([p], lr=1e-2, **kw)
    for _ in range(steps):
        opt.step([np.sin(p) + 0.1 * rng.standard_normal(p.size).astype(np.float32)])
    return p, opt


def test_numpy_a_float32_state_is_cast_to_the_loading_optimizers_bfloat16():
    _, fp32 = _numpy_run(5)
    saved = fp32.state_dict()
    p, bf16 = _numpy_run(0, state_dtype="bfloat16")
    bf16.load_state_dict(saved)
    (st,) = bf16.state.values()
    assert bf16.param_groups[0]["state_dtype"] == "bfloat16"
    for key in ("exp_avg", "exp_avg_sq"):
        assert st[key].dtype == BF16, key
        np.testing.assert_array_equal(st[key], next(iter(saved["state"].values()))[key].astype(BF16))
    bf16.step([np.ones_like(p)])
    assert next(iter(bf16.state.values()))["exp_avg"].dtype == BF16 and st["step"] == 6
    # built without a state_dtype, the saved bf16 state stays bf16 (a resume goes on as it was)
    _, plain = _numpy_run(0)
    plain.load_state_dict(bf16.state_dict())
    assert plain.param_groups[0]["state_dtype"] == "bfloat16"
    assert next(iter(plain.state.values()))["exp_avg_sq"].dtype == BF16


def test_torch_a_torch_optim_state_dict_is_cast_to_bfloat16_and_steps_on():
    torch = pytest.importorskip("torch")
    import adaopt.torch as at

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    x, y = torch.randn(64, 8), torch.randn(64, 1)

    def train(opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()

    reference = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train(reference, 5)
    ours = at.AdamW(model.parameters(), lr=1e-2, state_dtype="bfloat16")
    ours.load_state_dict(reference.state_dict())
    assert ours.param_groups[0]["state_dtype"] == "bfloat16"
    for p in model.parameters():
        for key in ("exp_avg", "exp_avg_sq"):
            assert ours.state[p][key].dtype == torch.bfloat16, key
            assert torch.equal(ours.state[p][key], reference.state[p][key].to(torch.bfloat16)), key
    train(ours, 3)
    assert all(ours.state[p]["exp_avg"].dtype == torch.bfloat16 and int(ours.state[p]["step"]) == 8
               for p in model.parameters())
    # an adaopt float32 state_dict: the group keeps its bfloat16, and the state follows it
    fp32 = at.AdamW(model.parameters(), lr=1e-2)
    train(fp32, 2)
    again = at.AdamW(model.parameters(), lr=1e-2, state_dtype="bfloat16")
    again.load_state_dict(fp32.state_dict())
    assert again.param_groups[0]["state_dtype"] == "bfloat16"
    assert all(again.state[p]["exp_avg_sq"].dtype == torch.bfloat16 for p in model.parameters())
    # built without one, a saved bf16 state stays bf16
    plain = at.AdamW(model.parameters(), lr=1e-2)
    plain.load_state_dict(again.state_dict())
    assert plain.param_groups[0]["state_dtype"] == "bfloat16"
    assert all(plain.state[p]["exp_avg"].dtype == torch.bfloat16 for p in model.parameters())
