"""A monitor carried across a resume: Monitor.state_dict() saved with the optimizer's state,
loaded into the new run's monitor, gives the history (and the verdict) of the whole run, with
its step numbers, as if the run had not stopped."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import adaopt
from adaopt.diagnostics import Monitor

STEPS, HALF = 160, 70


def _grad(x, t):
    rng = np.random.default_rng(t)
    return 2 * x * np.array([1.0, 10.0, 0.5]) + 0.05 * rng.normal(size=3)


def _run(x, opt, mon, start, stop):
    for t in range(start, stop):
        mon.log(loss=float(x @ (x * np.array([1.0, 10.0, 0.5]))))
        opt.step([_grad(x, t)])


def _fresh():
    x = np.array([3.0, -2.0, 1.5])
    opt = adaopt.Adam([x], lr=0.05)
    return x, opt, Monitor(opt, every=5)


def _resumed(carry=pickle):
    x, opt, mon = _fresh()
    _run(x, opt, mon, 0, HALF)
    saved = carry.loads(carry.dumps({"x": x.copy(), "opt": opt.state_dict(), "mon": mon.state_dict()}))
    y = saved["x"].copy()
    opt2 = adaopt.Adam([y], lr=0.05)
    opt2.load_state_dict(saved["opt"])
    mon2 = Monitor(opt2, every=5)
    mon2.load_state_dict(saved["mon"])
    _run(y, opt2, mon2, HALF, STEPS)
    return y, mon2


def test_the_resumed_history_is_the_uninterrupted_one():
    x, opt, mon = _fresh()
    _run(x, opt, mon, 0, STEPS)
    y, mon2 = _resumed()
    assert np.array_equal(x, y)
    a, b = mon.history, mon2.history
    assert list(b.steps) == list(range(1, STEPS + 1)) == list(a.steps)
    assert np.array_equal(a["loss"], b["loss"])
    for name in ("grad_norm", "update_norm", "param_norm", "eff_lr_p50", "lr", "bc2"):
        np.testing.assert_allclose(b[name], a[name], rtol=1e-12, equal_nan=True, err_msg=name)
        assert np.array_equal(a.present(name), b.present(name)), name
    # the step after the resume has no previous gradient to compare with; every other one does
    cos_a, cos_b = a.present("cos_grad"), b.present("cos_grad")
    assert not cos_b[HALF] and cos_a[HALF]
    cos_b[HALF] = True
    assert np.array_equal(cos_a, cos_b)
    assert mon.diagnose().verdict == mon2.diagnose().verdict


def test_the_state_is_plain_data_torch_loads_with_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    x, opt, mon = _fresh()
    _run(x, opt, mon, 0, 30)
    path = tmp_path / "ckpt.pt"
    torch.save({"mon": mon.state_dict()}, path)
    back = torch.load(path, weights_only=True)["mon"]
    assert repr(back) == repr(mon.state_dict())  # (repr: NaN == NaN)
    _, opt2, mon2 = _fresh()
    mon2.load_state_dict(back)
    assert list(mon2.history.steps) == list(range(1, 31))


def test_a_rollback_after_the_resume_reaches_into_the_saved_rows():
    x, opt, mon = _fresh()
    _run(x, opt, mon, 0, HALF)
    saved = {"x": x.copy(), "opt": opt.state_dict(), "mon": mon.state_dict()}
    y = saved["x"].copy()
    opt2 = adaopt.Adam([y], lr=0.05)
    opt2.load_state_dict(saved["opt"])
    mon2 = Monitor(opt2, every=5)
    mon2.load_state_dict(saved["mon"])
    _run(y, opt2, mon2, HALF, HALF + 20)
    mon2.rollback(to_step=50)
    assert list(mon2.history.steps) == list(range(1, 51))
    assert mon2.meta["rollbacks"] == [[HALF + 20, 50]]


def test_bad_states_are_refused_with_what_is_wrong():
    x, opt, mon = _fresh()
    _run(x, opt, mon, 0, 10)
    good = mon.state_dict()
    _, _, fresh = _fresh()
    with pytest.raises(ValueError, match="not a Monitor's state_dict"):
        fresh.load_state_dict({"rows": []})
    with pytest.raises(ValueError, match="version"):
        fresh.load_state_dict({**good, "version": 99})
    with pytest.raises(ValueError, match="watched 7 parameters, this one 3"):
        fresh.load_state_dict({**good, "parameters": 7})
    with pytest.raises(ValueError, match="10 rows, 9 extras"):
        fresh.load_state_dict({**good, "extra": good["extra"][:-1]})
    with pytest.raises(ValueError, match="8 numbers"):
        fresh.load_state_dict({**good, "rows": [r[:3] for r in good["rows"]]})
    with pytest.raises(ValueError, match="already recorded steps"):
        mon.load_state_dict(good)
    assert len(fresh.history) == 0  # nothing of a refused state was taken


def test_first_step_numbers_a_resume_without_the_saved_monitor_on_from_the_resume():
    """Without the saved monitor, Monitor(opt, first_step=k + 1) numbers the steps from k + 1: its
    history, check()'s evidence and its own state_dict (a state saved before the key was kept reads
    as 1); a bad value is refused naming it."""
    x, opt, _ = _fresh()
    _run(x, opt, Monitor(opt, every=5), 0, HALF)
    mon = Monitor(opt, every=5, first_step=HALF + 1)
    _run(x, opt, mon, HALF, STEPS)
    assert list(mon.history.steps) == list(range(HALF + 1, STEPS + 1))
    again = Monitor(opt, every=5)
    again.load_state_dict(mon.state_dict())
    assert list(again.history.steps) == list(range(HALF + 1, STEPS + 1))
    old = {k: v for k, v in mon.state_dict().items() if k != "first_step"}
    older = Monitor(opt, every=5)
    older.load_state_dict(old)
    assert older.history.steps[0] == 1
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=f"first_step={bad!r}"):
            Monitor(opt, first_step=bad)
    broken = {**mon.state_dict(), "first_step": 0}
    with pytest.raises(ValueError, match="first_step=0, allowed an integer >= 1"):
        Monitor(opt).load_state_dict(broken)
