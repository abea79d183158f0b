"""16-bit parameters in the NumPy frontend: compensated summation and stochastic rounding."""

import numpy as np
import pytest

import adaopt

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


def _run(cls, steps=300, **kw):
    """Minimise sum((x - 1.01)^2) from x = 1: every update is far below half a bf16 ulp of 1."""
    x = np.ones(64, dtype=BF16)
    opt = cls([x], **kw)
    for _ in range(steps):
        opt.step([(2 * (x.astype(np.float32) - 1.01)).astype(BF16)])
    return x.astype(np.float32), opt


@pytest.mark.parametrize("cls, kw", [(adaopt.SGD, dict(lr=1e-2)), (adaopt.AdaGrad, dict(lr=1e-3)),
                                     (adaopt.RMSprop, dict(lr=1e-4)), (adaopt.AdamW, dict(lr=1e-4))],
                         ids=["SGD", "AdaGrad", "RMSprop", "AdamW"])
def test_small_updates_are_lost_in_plain_bf16_and_kept_by_kahan_and_stochastic_rounding(cls, kw):
    plain, _ = _run(cls, **kw)
    kahan, opt = _run(cls, kahan=True, **kw)
    sr, _ = _run(cls, stochastic_rounding=True, **kw)
    assert np.all(plain == 1.0)  # each update rounds away
    assert opt.state["0"]["kahan_comp"].dtype == BF16
    assert kahan.mean() > 1.0 and sr.mean() > 1.0  # both moved towards 1.01
    # the reference: the same run in float32 (what the bf16 parameter should track)
    x32 = np.ones(64, dtype=np.float32)
    o32 = cls([x32], **kw)
    for _ in range(300):
        o32.step([2 * (x32 - np.float32(1.01))])
    ulp = 2.0**-7  # bfloat16's spacing at 1
    assert abs(kahan.mean() - x32.mean()) <= ulp
    assert abs(sr.mean() - x32.mean()) <= ulp


def test_kahan_state_survives_a_checkpoint(tmp_path):
    _, opt = _run(adaopt.Adam, steps=10, lr=1e-4, kahan=True)
    opt.save(tmp_path / "c.npz")
    x = np.ones(64, dtype=BF16)
    again = adaopt.Adam([x], lr=1e-4, kahan=True)
    again.load(tmp_path / "c.npz")
    assert np.array_equal(again.state["0"]["kahan_comp"].view(np.uint16),
                          opt.state["0"]["kahan_comp"].view(np.uint16))
