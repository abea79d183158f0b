"""adaopt.torch under DistributedDataParallel, ZeroRedundancyOptimizer and FSDP2 (with DCP), 2 processes on gloo."""

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


# ---------------------------------------------------------------------- FSDP2 (fully_shard), DCP


def _fsdp_model():
    from torch.distributed.fsdp import fully_shard

    model = _model()
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def _fsdp_steps(model, opt, rank, world, steps):
    X, y = _data()
    half = len(X) // world
    Xr, yr = X[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half]
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(Xr), yr).backward()
        opt.step()


def _fsdp_worker(rank, world, port, impl, folder, phase):
    """Phase "save": 2 ranks train STEPS // 2 steps and save model and optimizer with DCP.
    Phase "load": ``world`` ranks (1: resharded) load that and train the rest."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = _fsdp_model()
    opt = {"torch": torch.optim.AdamW, "adaopt": at.AdamW}[impl](model.parameters(), lr=1e-2, weight_decay=0.1)
    if phase == "load":
        msd, osd = get_state_dict(model, opt)
        state = {"model": msd, "optim": osd}
        dcp.load(state, checkpoint_id=f"{folder}/dcp-{impl}")
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    _fsdp_steps(model, opt, rank, world, STEPS // 2)
    if impl == "adaopt":
        assert opt._plan is not None and opt._plan.sharded and opt._plan.plan.buckets, "fused kernels on the shards"
    if phase == "save":
        msd, osd = get_state_dict(model, opt)
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=f"{folder}/dcp-{impl}")
    full = {k: v.full_tensor() for k, v in model.state_dict().items()}
    if rank == 0:
        torch.save(full, f"{folder}/{impl}-{phase}.pt")
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # gloo's threads sometimes abort an orderly interpreter exit after FSDP (torch alone too)


def _fsdp_run(tmp_path, impl):
    for phase, world in (("save", 2), ("load", 1)):
        mp.spawn(_fsdp_worker, args=(world, _free_port(), impl, str(tmp_path), phase), nprocs=world, join=True)
    return (torch.load(tmp_path / f"{impl}-save.pt", weights_only=True),
            torch.load(tmp_path / f"{impl}-load.pt", weights_only=True))


def test_fsdp2_steps_the_shards_with_the_fused_kernels_and_reshards_through_dcp(tmp_path):
    """fully_shard's DTensor parameters failed (.numpy() of a tensor subclass); now each rank
    steps its local shard, the state stays DTensors, and DCP saves it from 2 ranks and loads it
    into 1: adaopt equals torch.optim at both points."""
    ours_save, ours_load = _fsdp_run(tmp_path, "adaopt")
    theirs_save, theirs_load = _fsdp_run(tmp_path, "torch")
    for ours, theirs in ((ours_save, theirs_save), (ours_load, theirs_load)):
        for k in theirs:
            torch.testing.assert_close(ours[k], theirs[k], rtol=1e-10, atol=1e-12)
    assert any(not torch.equal(ours_save[k], ours_load[k]) for k in ours_save)


def _int8_fsdp_worker(rank, world, port, out):
    from torch.distributed.fsdp import fully_shard

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = fully_shard(torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.Tanh(), torch.nn.Linear(128, 4)))
    try:  # refused where it is asked for
        at.AdamW(model.parameters(), lr=1e-2, state_dtype="int8")
        built = None
    except ValueError as exc:
        built = str(exc)
    opt = at.AdamW(model.parameters(), lr=1e-2)
    for group in opt.param_groups:  # switched to 8-bit after construction: refused on the step
        group["state_dtype"] = "int8"
    before = [p.detach().full_tensor().clone() for p in model.parameters()]
    torch.nn.functional.cross_entropy(model(torch.randn(8, 128)), torch.randint(0, 4, (8,))).backward()
    try:
        opt.step()
        message = None
    except ValueError as exc:
        message = str(exc)
    after = [p.detach().full_tensor() for p in model.parameters()]
    if rank == 0:
        torch.save({"built": built, "message": message,
                    "same": all(torch.equal(a, b) for a, b in zip(before, after))}, out)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)


def test_int8_state_on_fsdp2_shards_is_refused_naming_what_works(tmp_path):
    """8-bit state on FSDP2 shards failed on the first step with "state 'exp_avg' has shape
    (128, 128), the parameter has (64, 128)": the codes were made for the whole parameter. Each
    shard's blocks would start at the shard's start, and DCP cannot reshard their scales, so it
    is refused with what works instead (bfloat16 state reshards through DCP): when the optimizer
    is built, and on the step for a group switched to 8-bit later, nothing stepped."""
    out = tmp_path / "int8.pt"
    mp.spawn(_int8_fsdp_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    for said in (got["built"], got["message"]):
        assert said and "state_dtype='int8'" in said and "bfloat16" in said, got
    assert "param_groups[0]['params'][0]" in got["built"], got
    assert got["same"]
