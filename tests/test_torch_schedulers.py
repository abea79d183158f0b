"""LR schedulers on resume, and the group keys torch users put in their param groups.

A real training script saves ``{"model", "optimizer", "scheduler"}`` mid-run, and a new
process builds all three again, loads them (``torch.load(weights_only=True)``) and goes
on. Schedulers keep their own keys in the optimizer's groups (``initial_lr``, ``max_lr``,
``base_momentum``, ``swa_lr``...): adaopt.torch dropped them on load, and the first
``scheduler.step()`` raised ``KeyError: 'initial_lr'``. Here every scheduler torch ships,
and SWALR, is stopped at step ``STOP``, saved, resumed in one fresh interpreter and
compared bit for bit with a run that never stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
import adaopt.torch as at  # noqa: E402

STEPS, STOP = 12, 5

#: scheduler name -> (optimizer, its arguments, the scheduler's construction as source)
SCHEDULERS = {
    "LambdaLR": ("SGD", {"lr": 0.1, "momentum": 0.9}, "LambdaLR(opt, lambda e: 0.9 ** e)"),
    "MultiplicativeLR": ("SGD", {"lr": 0.1}, "MultiplicativeLR(opt, lambda e: 0.95)"),
    "StepLR": ("AdamW", {"lr": 0.01}, "StepLR(opt, step_size=3, gamma=0.5)"),
    "MultiStepLR": ("Adam", {"lr": 0.01}, "MultiStepLR(opt, milestones=[2, 7], gamma=0.3)"),
    "ConstantLR": ("RMSprop", {"lr": 0.01}, "ConstantLR(opt, factor=0.5, total_iters=6)"),
    "LinearLR": ("Adagrad", {"lr": 0.05}, "LinearLR(opt, start_factor=0.2, total_iters=8)"),
    "ExponentialLR": ("NAdam", {"lr": 0.01}, "ExponentialLR(opt, gamma=0.9)"),
    "PolynomialLR": ("RAdam", {"lr": 0.01}, "PolynomialLR(opt, total_iters=10, power=2.0)"),
    "CosineAnnealingLR": ("AdamW", {"lr": 0.01}, "CosineAnnealingLR(opt, T_max=10)"),
    "CosineAnnealingWarmRestarts": ("SGD", {"lr": 0.1, "momentum": 0.9},
                                    "CosineAnnealingWarmRestarts(opt, T_0=4, T_mult=2)"),
    "CyclicLR": ("SGD", {"lr": 0.1, "momentum": 0.9},
                 "CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=3)"),
    "OneCycleLR": ("AdamW", {"lr": 0.01}, f"OneCycleLR(opt, max_lr=0.05, total_steps={STEPS + 1})"),
    "ReduceLROnPlateau": ("Adam", {"lr": 0.01}, "ReduceLROnPlateau(opt, patience=1, factor=0.5)"),
    "SequentialLR": ("Adamax", {"lr": 0.01}, "SequentialLR(opt, [LinearLR(opt, start_factor=0.1, "
                     "total_iters=3), ExponentialLR(opt, gamma=0.9)], milestones=[3])"),
    "ChainedScheduler": ("Adadelta", {}, "ChainedScheduler([ConstantLR(opt, factor=0.5, total_iters=4), "
                         "ExponentialLR(opt, gamma=0.9)])"),
    "SWALR": ("SGD", {"lr": 0.1}, "SWALR(opt, swa_lr=0.02, anneal_epochs=4)"),
}

RUNNER = '''
import torch
import adaopt.torch as at
from torch.optim.lr_scheduler import *
from torch.optim.swa_utils import SWALR

torch.set_num_threads(1)


def build(opt_name, kwargs, sched_src):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    opt = getattr(at, opt_name)(model.parameters(), **kwargs)
    sched = eval(sched_src, globals(), {{"opt": opt}})
    return model, opt, sched


def steps(model, opt, sched, first, last):
    X = torch.linspace(-1, 1, 60, dtype=torch.float64).reshape(10, 6)
    y = torch.stack([X.sum(1).sin(), X[:, 0] * X[:, 1]], 1)
    for t in range(first, last):
        opt.zero_grad()
        loss = ((model(X) - y) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step(loss.item()) if isinstance(sched, ReduceLROnPlateau) else sched.step()
    return [p.detach().clone() for p in model.parameters()], [g["lr"] for g in opt.param_groups]
'''

CHILD = '''
import json, sys
{runner}
jobs = json.load(open(sys.argv[1]))
out = {{}}
for name, (opt_name, kwargs, src, path) in jobs.items():
    model, opt, sched = build(opt_name, kwargs, src)
    saved = torch.load(path, weights_only=True)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    params, lrs = steps(model, opt, sched, {stop}, {steps})
    out[name] = [[p.flatten().tolist() for p in params], lrs]
json.dump(out, open(sys.argv[2], "w"))
'''

_NS: dict = {}
exec(compile(textwrap.dedent(RUNNER.format()), "<schedulers>", "exec"), _NS)  # noqa: S102 - our own text


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sched")
    jobs = {}
    for name, (opt_name, kwargs, src) in SCHEDULERS.items():
        model, opt, sched = _NS["build"](opt_name, kwargs, src)
        _NS["steps"](model, opt, sched, 0, STOP)
        path = folder / f"{name}.pt"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, path)
        jobs[name] = (opt_name, kwargs, src, str(path))
    (folder / "jobs.json").write_text(json.dumps(jobs))
    script = folder / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(runner=RUNNER.format(), stop=STOP, steps=STEPS)))
    run = subprocess.run([sys.executable, str(script), str(folder / "jobs.json"), str(folder / "out.json")],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((folder / "out.json").read_text())


def test_every_scheduler_torch_ships_is_in_the_table():
    import torch.optim.lr_scheduler as S

    shipped = {n for n in S.__all__ if n not in ("LRScheduler", "_LRScheduler")}
    assert shipped <= set(SCHEDULERS), sorted(shipped - set(SCHEDULERS))


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_resume_with_a_scheduler_in_a_new_process_is_bit_exact(name, resumed):
    opt_name, kwargs, src = SCHEDULERS[name]
    model, opt, sched = _NS["build"](opt_name, kwargs, src)
    params, lrs = _NS["steps"](model, opt, sched, 0, STEPS)
    got_params, got_lrs = resumed[name]
    assert got_lrs == lrs
    for k, (a, b) in enumerate(zip(got_params, params)):
        assert a == b.flatten().tolist(), f"{name}: parameter {k} differs after resuming"


@pytest.mark.parametrize("name", ["OneCycleLR", "SWALR", "CyclicLR", "LambdaLR"])
def test_scheduler_keys_survive_load_state_dict_in_place(name):
    """``opt.load_state_dict(opt.state_dict()); sched.step()`` raised KeyError: 'initial_lr'."""
    opt_name, kwargs, src = SCHEDULERS[name]
    model, opt, sched = _NS["build"](opt_name, kwargs, src)
    _NS["steps"](model, opt, sched, 0, 2)
    keys = set(opt.param_groups[0])
    opt.load_state_dict(opt.state_dict())
    assert keys <= set(opt.param_groups[0])  # torch's __setstate__ may add its differentiable flag
    _NS["steps"](model, opt, sched, 2, 3)


def test_a_scheduler_built_with_last_epoch_after_loading_a_torch_checkpoint():
    model = torch.nn.Linear(4, 2)
    ref = torch.optim.AdamW(model.parameters(), lr=0.01)
    torch.optim.lr_scheduler.StepLR(ref, step_size=2)
    opt = at.AdamW(model.parameters(), lr=0.01)
    opt.load_state_dict(ref.state_dict())
    assert opt.param_groups[0]["initial_lr"] == 0.01
    torch.optim.lr_scheduler.StepLR(opt, step_size=2, last_epoch=3).step()


def test_the_groups_own_keys_are_kept_and_hyperparameters_still_checked():
    """timm's layer decay puts ``lr_scale`` in a group, other code a ``name``: torch keeps
    any key. A misspelt hyperparameter of the constructor is still an error."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    opt = at.AdamW([{"params": model[0].parameters(), "lr_scale": 0.1}], lr=0.01)
    opt.add_param_group({"params": model[1].parameters(), "name": "head"})
    assert opt.param_groups[0]["lr_scale"] == 0.1 and opt.param_groups[1]["name"] == "head"
    again = at.AdamW([{"params": model[0].parameters()}, {"params": model[1].parameters()}], lr=0.01)
    again.load_state_dict(opt.state_dict())
    assert again.param_groups[0]["lr_scale"] == 0.1 and again.param_groups[1]["name"] == "head"
    with pytest.raises(TypeError, match="weight_dacay"):
        at.AdamW(model.parameters(), weight_dacay=0.1)
    with pytest.raises(ValueError, match="lr=-1"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": -1.0, "name": "bad"})
