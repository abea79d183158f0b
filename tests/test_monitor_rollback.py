"""A run stopped by the monitor, rolled back to a checkpoint and continued: the monitor must
not read the restore as an update (NaN or huge) and raise again, and the undone steps leave
the history, so the clean run that follows gets a verdict of its own."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import adaopt
from adaopt.diagnostics import ALARMS, Monitor, StopTraining, read_log
from adaopt.lab.problems import get_problem

CHECKPOINT_EVERY = 50
NAN_AT = 170  # the loop index whose gradient gets a NaN (once)
STEPS = 400


def _poisoned(g, t, poisoned):
    if t == NAN_AT and not poisoned:
        g = g.copy()
        g[3] = np.nan
    return g


def _numpy_run(opt_cls, log_after, **hp):
    P = get_problem("quadratic")
    x = P.x0(0).copy()
    opt = opt_cls([x], **hp)
    mon = Monitor(opt, stop_on=("NONFINITE",))
    stops, t, checkpoint = [], 0, None
    while t < STEPS:
        if t % CHECKPOINT_EVERY == 0:
            checkpoint = (t, x.copy(), opt.state_dict())
        f, g = P.value_and_grad(x)
        g = _poisoned(g, t, bool(stops))
        if not log_after:
            mon.log(float(f))
        try:
            opt.step([g])
        except StopTraining as exc:
            stops.append((t, exc.diagnosis.verdict))
            t, saved_x, saved_state = checkpoint
            x[:] = saved_x
            opt.load_state_dict(saved_state)
            continue
        if log_after:
            mon.log(float(f))
        t += 1
    return mon, stops


@pytest.mark.parametrize("log_after", [False, True], ids=["log_before_step", "log_after_step"])
@pytest.mark.parametrize("opt_cls, hp", [(adaopt.Adam, {"lr": 0.05}), (adaopt.RMSprop, {"lr": 0.01}),
                                         (adaopt.SGD, {"lr": 0.01, "momentum": 0.9})],
                         ids=["adam", "rmsprop", "sgd_momentum"])
def test_numpy_run_rolled_back_after_a_nan_continues_without_a_second_stop(opt_cls, hp, log_after):
    mon, stops = _numpy_run(opt_cls, log_after, **hp)
    assert stops == [(NAN_AT, "NONFINITE")]  # stopped once, at the poisoned step, never again
    h = mon.history
    assert h.steps.tolist() == list(range(1, STEPS + 1))  # the undone steps 151..171 left the history
    assert not h.has("nonfinite") or (h["nonfinite"] == 0).all()
    assert np.isfinite(h["update_norm"]).all() and np.isfinite(h["grad_norm"]).all()
    # the first step after the restore is measured from the restored parameters: no jump
    restart = NAN_AT - NAN_AT % CHECKPOINT_EVERY  # the checkpoint's step count: 150
    assert h["update_norm"][restart] < 10 * np.median(h["update_norm"][restart - 10:restart])
    assert mon.meta["rollbacks"] == [[NAN_AT + 1, restart]]
    d = mon.diagnose()
    assert d.verdict not in ALARMS, str(d)
    assert mon.check() is None


def test_rolled_back_history_saves_and_reads_back(tmp_path):
    mon, _ = _numpy_run(adaopt.Adam, False, lr=0.05)
    back = read_log(mon.save(tmp_path / "run.csv"))
    assert back.steps.tolist() == list(range(1, STEPS + 1))
    assert back.meta["rollbacks"] == [[NAN_AT + 1, 150]]


def test_explicit_rollback_when_only_the_parameters_are_restored():
    """A restore the optimizer's state does not show (here: parameters only, the state
    untouched) is told with ``mon.rollback(to_step=...)``."""
    P = get_problem("quadratic")
    x = P.x0(0).copy()
    opt = adaopt.SGD([x], lr=0.01)
    mon = Monitor(opt, stop_on=("NONFINITE",))
    saved = None
    for t in range(100):
        if t == 40:
            saved = x.copy()
        f, g = P.value_and_grad(x)
        if t == 60:
            g = g.copy()
            g[0] = np.nan
        mon.log(float(f))
        try:
            opt.step([g])
        except StopTraining:
            x[:] = saved
            mon.rollback(to_step=40)
    h = mon.history
    assert h.steps.tolist() == list(range(1, 80))  # 40 kept, then the 39 clean steps of t = 61..99
    assert np.isfinite(h["update_norm"]).all()
    assert mon.diagnose().verdict not in ALARMS


def test_rollback_argument_errors_name_what_is_allowed():
    x = np.ones(4)
    opt = adaopt.SGD([x], lr=0.1)
    mon = Monitor(opt)
    for _ in range(5):
        opt.step([x.copy()])
    for bad in (-1, 6, 2.5, True):
        with pytest.raises(ValueError, match=r"to_step=.*0 to 5"):
            mon.rollback(to_step=bad)
    with pytest.raises(ValueError, match="to_step"):  # nothing says which step was restored
        mon.rollback()
    mon.rollback(to_step=5)  # nothing undone: allowed
    assert len(mon.history) == 5 and "rollbacks" not in mon.meta


def test_loading_an_earlier_state_without_restoring_the_parameters_keeps_the_history():
    """Resetting the optimizer's state (an old state_dict, parameters kept) is not a rollback:
    no step was undone."""
    P = get_problem("quadratic")
    x = P.x0(0).copy()
    opt = adaopt.Adam([x], lr=0.05)
    mon = Monitor(opt)
    fresh = opt.state_dict()
    for t in range(60):
        if t == 30:
            opt.load_state_dict(fresh)
        f, g = P.value_and_grad(x)
        mon.log(float(f))
        opt.step([g])
    assert len(mon.history) == 60 and "rollbacks" not in mon.meta


def test_torch_model_rolled_back_after_a_nan_continues_without_a_second_stop():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    X = torch.randn(256, 8)
    y = X @ torch.randn(8, 1) + 0.1 * torch.randn(256, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    mon = Monitor(opt, stop_on=("NONFINITE",))
    stops, t, checkpoint = [], 0, None
    while t < STEPS:
        if t % CHECKPOINT_EVERY == 0:
            # state_dict()s hold the live tensors, which the next steps change in place: copies
            checkpoint = (t, copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        if t == NAN_AT and not stops:
            model[0].weight.grad[0, 0] = float("nan")
        mon.log(loss)
        try:
            opt.step()
        except StopTraining as exc:
            stops.append((t, exc.diagnosis.verdict))
            t, model_state, opt_state = checkpoint
            model.load_state_dict(model_state)
            opt.load_state_dict(opt_state)
            continue
        t += 1
    assert stops == [(NAN_AT, "NONFINITE")]
    h = mon.history
    assert h.steps.tolist() == list(range(1, STEPS + 1))
    assert np.isfinite(h["update_norm"]).all() and (h["nonfinite"] == 0).all()
    assert mon.meta["rollbacks"] == [[NAN_AT + 1, 150]]
    d = mon.diagnose()
    assert d.verdict not in ALARMS, str(d)


def test_explicit_rollback_after_the_monitor_noticed_it_is_a_no_op():
    """mon.rollback() after a restore the monitor already saw (reading the history does):
    nothing more is undone, and no error."""
    P = get_problem("quadratic")
    x = P.x0(0).copy()
    opt = adaopt.Adam([x], lr=0.05)
    mon = Monitor(opt)
    for t in range(30):
        if t == 10:
            saved = (x.copy(), opt.state_dict())
        f, g = P.value_and_grad(x)
        mon.log(float(f))
        opt.step([g])
    x[:] = saved[0]
    opt.load_state_dict(saved[1])
    assert len(mon.history) == 10  # noticed on reading
    mon.rollback()
    assert len(mon.history) == 10 and mon.meta["rollbacks"] == [[30, 10]]
    f, g = P.value_and_grad(x)
    mon.log(float(f))
    opt.step([g])
    assert len(mon.history) == 11
    with pytest.raises(ValueError, match="to_step"):
        mon.rollback()  # a step later: nothing says what to undo
