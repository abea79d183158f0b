#!/usr/bin/env python
"""Whole training steps (forward, backward, optimizer step): adaopt.torch against torch.optim.

Three models a practitioner trains on a CPU: a small CNN on 8x8 digit images, a small
transformer language model with two param groups and tied embeddings, and an MLP of 1.9M
parameters (784-1024-1024-10), whose step is big enough for the kernels' threads. For each, the same
initial weights and batches go to ``adaopt.torch.AdamW`` and ``torch.optim.AdamW(fused=True)``
(and torch's default for-loop AdamW, and adaopt.torch with its threaded kernels on adaopt's own
pool instead of torch's OpenMP threads); steps are timed in blocks, interleaved round-robin
(the order shuffled each repetition), and the table shows the median step time and the
ratio to torch fused (above 1: adaopt is faster), with the range of that ratio over the
rounds, and the median time of the optimizer step alone (``opt.step()``, timed inside). A
second torch fused run (A/A) shows how far two identical runs differ here: a difference within
its spread is noise. ``--hog K`` runs K busy processes beside
it, as a data loader would; ``make bench`` runs it both ways.

Run ``python benchmarks/bench_train.py`` (``--quick`` for a smoke test).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import adaopt.torch as at
from adaopt.kernels import team
from bench_step import block_orders, start_hogs

nn = torch.nn


def cnn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10))
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(8)]

    def loss(m, batch):
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    return model, [{"params": list(model.parameters())}], batches, loss


class TinyLM(nn.Module):
    def __init__(self, vocab=256, d=64, heads=4, layers=2, length=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(length, d))
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied, as GPT-2 does
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length), persistent=False)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        return self.head(self.norm(self.blocks(x, mask=self.mask, is_causal=True)))


def lm():
    torch.manual_seed(0)
    model = TinyLM()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, 256, (16, 33), generator=g) for _ in range(8)]

    def loss(m, batch):
        logits = m(batch[:, :-1])
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))

    return model, [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}], batches, loss


def mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(8)]

    def loss(m, batch):
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    return model, [{"params": list(model.parameters())}], batches, loss


class _OnOwnPool:
    """adaopt.torch with its threaded kernels on adaopt's own pool rather than on torch's
    OpenMP threads (``adaopt.kernels.team.ENABLED`` off for its steps only)."""

    def __init__(self, groups):
        self.opt = at.AdamW(groups, lr=1e-3)

    def zero_grad(self, set_to_none=True):
        self.opt.zero_grad(set_to_none=set_to_none)

    def step(self):
        team.ENABLED = False
        try:
            self.opt.step()
        finally:
            team.ENABLED = True


IMPLS = {
    "adaopt.torch AdamW": lambda groups: at.AdamW(groups, lr=1e-3),
    # the same on adaopt's own pool: what the threads of torch's OpenMP team are worth (the MLP)
    "adaopt.torch, own pool": _OnOwnPool,
    "torch AdamW fused=True": lambda groups: torch.optim.AdamW(groups, lr=1e-3, fused=True),
    # A/A: a second, identical torch fused run; its ratio to the first is the benchmark's noise
    "torch fused again (A/A)": lambda groups: torch.optim.AdamW(groups, lr=1e-3, fused=True),
    "torch AdamW for-loop": lambda groups: torch.optim.AdamW(groups, lr=1e-3, foreach=False),
}


def _setup(make, impl):
    model, groups, batches, loss = make()
    opt = IMPLS[impl](groups)
    state = {"k": 0, "opt_s": []}

    def step():
        batch = batches[state["k"] % len(batches)]
        state["k"] += 1
        opt.zero_grad(set_to_none=True)
        loss(model, batch).backward()
        t = time.perf_counter()
        opt.step()
        state["opt_s"].append(time.perf_counter() - t)

    for _ in range(3):  # warm up: numba compiles, torch allocates
        step()
    step.opt_s = state["opt_s"]
    return step


def bench(name, make, reps, block_s):
    steps = {impl: _setup(make, impl) for impl in IMPLS}
    per = {impl: max(1, int(block_s / _time_one(fn))) for impl, fn in steps.items()}
    times = {impl: [] for impl in IMPLS}
    for order in block_orders(list(IMPLS), reps):
        for impl in order:
            t = time.perf_counter()
            for _ in range(per[impl]):
                steps[impl]()
            times[impl].append((time.perf_counter() - t) / per[impl])
    ref = statistics.median(times["torch AdamW fused=True"])
    for impl in IMPLS:
        med = statistics.median(times[impl])
        # the same ratio round by round (each round's two blocks ran minutes apart at most)
        rounds = sorted(a / b for a, b in zip(times["torch AdamW fused=True"], times[impl]))
        opt_s = statistics.median(steps[impl].opt_s[3:])
        print(f"  {name:<26} {impl:<24} {med * 1e3:8.3f} ms   {ref / med:5.2f}x torch fused"
              f"   (rounds {rounds[0]:.2f}-{rounds[-1]:.2f}x)   opt.step() {opt_s * 1e6:7.0f} us")


def _time_one(fn) -> float:
    t = time.perf_counter()
    fn()
    return max(time.perf_counter() - t, 1e-6)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--hog", type=int, default=0, metavar="K", help="K busy processes beside the run")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    hogs = start_hogs(args.hog)
    try:
        print(f"whole training steps, torch {torch.__version__}, {torch.get_num_threads()} torch threads"
              + (f", {args.hog} busy process(es) beside" if args.hog else ", idle"))
        reps, block_s = (3, 0.1) if args.quick else (7, 0.5)
        n_cnn = sum(p.numel() for p in cnn()[0].parameters())
        n_lm = sum(p.numel() for p in lm()[0].parameters())
        n_mlp = sum(p.numel() for p in mlp()[0].parameters())
        bench(f"CNN digits ({n_cnn / 1e3:.0f}k params)", cnn, reps, block_s)
        bench(f"LM 2 groups, tied ({n_lm / 1e3:.0f}k)", lm, reps, block_s)
        bench(f"MLP ({n_mlp / 1e6:.1f}M params)", mlp, reps, block_s)
    finally:
        for h in hogs:
            h.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
