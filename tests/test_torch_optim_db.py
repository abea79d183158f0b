"""torch's own curated optimizer inputs, run against adaopt.torch.

``torch.testing._internal.common_optimizers.optim_db`` (shipped in the torch wheel; it
needs ``expecttest``) lists, for each torch.optim class, the constructor inputs torch tests
itself with and the inputs it must refuse. For every registered family torch has: each
input gives adaopt.torch the same trajectory as torch.optim (float64, 1e-10) and a
state_dict that torch.optim loads and continues from identically; each error input that
torch refuses at construction, adaopt refuses with the same exception type (or warns, where
torch warns). Inputs asking for what adaopt refuses on purpose (``differentiable=True``,
``capturable=True``) are listed and checked to be refused with a message instead.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")  # torch's common_optimizers imports it
from torch.testing._internal.common_optimizers import optim_db  # noqa: E402

import adaopt.torch as at  # noqa: E402
from adaopt import registry  # noqa: E402

OURS = {f.torch_name or f.name: key for key, f in registry.FAMILIES.items()}
DB = [o for o in optim_db if o.optim_cls.__name__ in OURS]
REFUSED_ON_PURPOSE = ("differentiable", "capturable")


def _inputs():
    for o in DB:
        for k, inp in enumerate(o.optim_inputs_func(device="cpu", dtype=torch.float64)):
            yield pytest.param(o, inp, id=f"{o.name}-{k}-{inp.desc.replace(' ', '_')}")


def _errors():
    for o in DB:
        for k, e in enumerate(o.optim_error_inputs_func(device="cpu", dtype=torch.float64)):
            if e.error_on.name == "CONSTRUCTION_ERROR":
                yield pytest.param(o, e, id=f"{o.name}-{k}-{e.error_type.__name__}")


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()


def _run(model, opt, steps):
    torch.manual_seed(1)
    X, y = torch.randn(16, 5, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    for _ in range(steps):
        opt.zero_grad()
        ((model(X) - y) ** 2).mean().backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_the_db_covers_every_registered_family_torch_has():
    assert {o.optim_cls.__name__ for o in DB} == set(OURS)


@pytest.mark.parametrize("o, inp", list(_inputs()))
def test_torchs_inputs_give_torchs_trajectory_and_state_dict(o, inp):
    ours_cls = at.CLASSES[OURS[o.optim_cls.__name__]]
    if any(inp.kwargs.get(k) for k in REFUSED_ON_PURPOSE):
        with pytest.raises(ValueError, match="|".join(REFUSED_ON_PURPOSE)):
            ours_cls(_model().parameters(), **inp.kwargs)
        return
    theirs_model, ours_model = _model(), _model()
    theirs = o.optim_cls(theirs_model.parameters(), **inp.kwargs)
    ours = ours_cls(ours_model.parameters(), **inp.kwargs)
    for a, b in zip(_run(ours_model, ours, 10), _run(theirs_model, theirs, 10)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # adaopt's state_dict, loaded into torch.optim, continues as torch's own
    again_model = _model()
    again_model.load_state_dict(ours_model.state_dict())
    again = o.optim_cls(again_model.parameters(), **inp.kwargs)
    again.load_state_dict(ours.state_dict())
    for a, b in zip(_run(again_model, again, 5), _run(theirs_model, theirs, 5)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("o, err", list(_errors()))
def test_torchs_error_inputs_are_refused_alike(o, err):
    ours_cls = at.CLASSES[OURS[o.optim_cls.__name__]]
    ei = err.optimizer_error_input
    params = ei.params if ei.params is not None else _model().parameters()
    if issubclass(err.error_type, Warning):
        with pytest.warns(err.error_type):
            ours_cls(params, **ei.kwargs)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(err.error_type):
            ours_cls(params, **ei.kwargs)
