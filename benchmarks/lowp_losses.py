#!/usr/bin/env python
"""Does low-memory state train as well? Final losses with float32, bfloat16 and 8-bit moments.

Two real minibatch runs, each over seeds 0, 1, 2 (init and data order), with
``adaopt.torch.AdamW`` and ``state_dtype`` None (float32), ``"bfloat16"`` and ``"int8"``:

* the digits MLP (64-128-10, ReLU, batch 64, 150 steps, lr 1e-3, loss about 0.2): its
  64x128 layer (8192 weights) takes 8-bit state, the 128x10 one and the biases float32.
  Trained on to a loss of 0.007 (400 steps at lr 3e-3) the relative differences grow to
  about 5% both ways (bf16 +5.5%, int8 -5.3%, the same sign over the seeds): near zero
  loss the last digits are all that is left;
* a one-block causal transformer LM on characters (d = 64, 2 heads, context 32, batch 32,
  400 steps, lr 3e-3) on the standard library's docstrings: its attention and MLP
  matrices (12,288 and 16,384 weights) and its embedding and head (71 x 64) take 8-bit
  state; biases and norms stay float32 (under 4096 elements).

It prints, per run and seed, the final loss (mean over fixed evaluation batches) and its
difference from the float32 state's run of the same seed. ``python benchmarks/lowp_losses.py``
(about a minute on one thread; also the last part of ``bench_lowp.py``).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STATES = (None, "bfloat16", "int8")
SEEDS = (0, 1, 2)


def _train(task, make, state_dtype, seed, steps, lr):
    import torch

    import adaopt.torch as at

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    model = make()
    opt = at.AdamW(model.parameters(), lr=lr, weight_decay=0.01, state_dtype=state_dtype)
    for _ in range(steps):
        x, y = task.batch(gen)
        opt.zero_grad()
        task.loss(model, x, y).backward()
        opt.step()
    with torch.no_grad():
        return statistics.fmean(float(task.loss(model, x, y)) for x, y in task.eval_batches())


def runs():
    """(name, task, model factory, steps, lr) of the two runs."""
    import torch

    from benchmarks.corpus.runs_torch import Task, TinyTransformer

    digits = Task("digits", "mlp", batch=64)
    text = Task("text", "transformer", batch=32, ctx=32)
    return [("digits MLP", digits, lambda: torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                                                torch.nn.Linear(128, 10)), 150, 1e-3),
            ("transformer LM", text, lambda: TinyTransformer(text.classes, 32, d=64), 400, 3e-3)]


def losses(seeds=SEEDS) -> list[dict]:
    """One row per run, state dtype and seed: the final loss and its relative difference
    from the float32 state's."""
    import torch

    torch.set_num_threads(1)
    rows = []
    for name, task, make, steps, lr in runs():
        for seed in seeds:
            base = None
            for sd in STATES:
                loss = _train(task, make, sd, seed, steps, lr)
                base = loss if sd is None else base
                rows.append({"run": name, "state": sd or "float32", "seed": seed, "loss": loss,
                             "vs_float32": loss / base - 1})
    return rows


def print_losses(rows: list[dict]) -> None:
    print("Final loss by optimizer state (AdamW; in brackets the difference from the float32 state's run, same seed):")
    for name in dict.fromkeys(r["run"] for r in rows):
        for sd in dict.fromkeys(r["state"] for r in rows):
            mine = [r for r in rows if r["run"] == name and r["state"] == sd]
            cells = ", ".join(f"{r['loss']:.4f}" + ("" if sd == "float32" else f" ({r['vs_float32']:+.2%})")
                              for r in mine)
            print(f"  {name:15s} {sd:9s} seeds {', '.join(str(r['seed']) for r in mine)}: {cells}")


if __name__ == "__main__":
    print_losses(losses())
