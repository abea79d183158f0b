"""adaopt.torch under DistributedDataParallel and ZeroRedundancyOptimizer, 2 processes on gloo."""

import os
import socket

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available", allow_module_level=True)

import torch.multiprocessing as mp  # noqa: E402
from torch.distributed.optim import ZeroRedundancyOptimizer  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

import adaopt.torch as at  # noqa: E402

STEPS = 20


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.Tanh(), torch.nn.Linear(24, 4)).double()


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, 16, generator=g, dtype=torch.float64), torch.randint(0, 4, (64,), generator=g)


def _worker(rank, world, port, out):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = DDP(_model())
    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=at.AdamW, lr=1e-2, weight_decay=0.1)
    X, y = _data()
    half = len(X) // world
    Xr, yr = X[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half]
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(Xr), yr).backward()  # DDP averages: the full-batch mean
        opt.step()
    opt.consolidate_state_dict(to=0)
    if rank == 0:
        torch.save({"params": [p.detach() for p in model.module.parameters()],
                    "optimizer": opt.state_dict()}, out)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_with_zero_redundancy_adamw_equals_one_process(tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    saved = torch.load(out, weights_only=True)

    model = _model()
    opt = at.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    X, y = _data()
    start = [p.detach().clone() for p in model.parameters()]
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    for got, want, before in zip(saved["params"], model.parameters(), start):
        torch.testing.assert_close(got, want.detach(), rtol=1e-10, atol=1e-12)
        assert not torch.equal(got, before)
    # the consolidated ZeRO checkpoint holds every parameter's state, at the same step
    states = saved["optimizer"]["state"]
    assert len(states) == len(start)
    assert all(float(s["step"]) == STEPS for s in states.values())
