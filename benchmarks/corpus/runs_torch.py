"""The corpus's torch runs: minibatch CNNs and MLPs on the bundled tables, tiny transformer and
GRU language models on the standard library's docstrings, with torch.optim or adaopt.torch.

:func:`train` is the one training loop: a seeded init and data order, a Monitor, ``check()``
every step (the first step it fires is recorded), and an optional lr schedule and hooks that
make the failures (a bad init, an lr jump, a NaN batch).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

import adaopt.torch as at
from adaopt.diagnostics import Monitor

from . import data
from .case import Result

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
              "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad,
              "at.adam": at.Adam, "at.adamw": at.AdamW, "at.rmsprop": at.RMSprop, "at.sgd": at.SGD,
              "at.adagrad": at.AdaGrad}


# ---------------------------------------------------------------------- models


def mlp(d_in, d_out, hidden=32, act=nn.ReLU):
    return nn.Sequential(nn.Linear(d_in, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, d_out))


class CNN(nn.Module):
    """Digits (8x8): conv 3x3 (8) - ReLU - max-pool 2 - conv 3x3 (16) - ReLU - linear."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))

    def forward(self, x):
        return self.body(x.view(-1, 1, 8, 8))


class TinyTransformer(nn.Module):
    """A one-block causal transformer LM (d = 32, 2 heads), pre-LN or post-LN."""

    def __init__(self, vocab, ctx=32, d=32, post_ln=False):
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, d), nn.Parameter(0.02 * torch.randn(ctx, d))
        self.block = nn.TransformerEncoderLayer(d, 2, 4 * d, dropout=0.0, batch_first=True, norm_first=not post_ln)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)
        self.mask = nn.Transformer.generate_square_subsequent_mask(ctx)

    def forward(self, x):
        h = self.emb(x) + self.pos[: x.shape[1]]
        return self.head(self.norm(self.block(h, src_mask=self.mask, is_causal=True)))


class GRULM(nn.Module):
    def __init__(self, vocab, d=32, hidden=64):
        super().__init__()
        self.emb, self.gru, self.head = nn.Embedding(vocab, d), nn.GRU(d, hidden, batch_first=True), nn.Linear(hidden, vocab)

    def forward(self, x):
        return self.head(self.gru(self.emb(x))[0])


# ---------------------------------------------------------------------- tasks


class Task:
    """A data set, a model and a loss: ``batch(rng)`` draws a minibatch, ``eval()`` the fixed
    evaluation batches, ``loss(model, x, y)`` the mean loss."""

    def __init__(self, name, model, batch=32, ctx=32):
        self.name, self.model, self.bs, self.ctx = name, model, batch, ctx
        if name in ("text",):
            self.ids = torch.from_numpy(data.text())
            self.classes = len(data.ALPHABET)
        else:
            X, y, k = data.table(name)
            self.X, self.y, self.classes = torch.from_numpy(X), torch.from_numpy(y), k

    def make(self):
        if self.model == "cnn":
            return CNN()
        if self.model in ("transformer", "post_ln"):
            return TinyTransformer(self.classes, self.ctx, post_ln=self.model == "post_ln")
        if self.model == "gru":
            return GRULM(self.classes)
        return mlp(self.X.shape[1], max(self.classes, 1))

    def batch(self, gen):
        if self.name == "text":
            start = torch.randint(0, len(self.ids) - self.ctx - 1, (self.bs,), generator=gen)
            idx = start[:, None] + torch.arange(self.ctx + 1)
            seq = self.ids[idx]
            return seq[:, :-1], seq[:, 1:]
        idx = torch.randint(0, len(self.X), (self.bs,), generator=gen)
        return self.X[idx], self.y[idx]

    def eval_batches(self):
        gen = torch.Generator().manual_seed(1234)
        if self.name == "text":
            return [self.batch(gen) for _ in range(8)]
        return [(self.X, self.y)]

    def loss(self, model, x, y):
        out = model(x)
        if self.classes == 0:
            return ((out.squeeze(-1) - y) ** 2).mean()
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    def baseline(self) -> float:
        """The loss of knowing nothing of the input: ln K, the unigram entropy, or 1 (the variance)."""
        if self.name == "text":
            return data.unigram_entropy()
        return data.chance(self.classes) if self.classes else 1.0


# ---------------------------------------------------------------------- the loop


def train(task: Task, opt: str, seed: int, *, steps=300, lr=1e-3, schedule=None, init=None, batch_hook=None,
          dtype=None, onset=None, floor=False, **hp) -> Result:
    """Train ``task``'s model with optimizer ``opt`` for ``steps`` minibatches, watched by a Monitor.

    ``schedule(t)`` multiplies lr at loop index t; ``init(model)`` changes the initial weights;
    ``batch_hook(t, x, y)`` may change a batch; ``dtype`` casts the model (bfloat16).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    model = task.make()
    if init is not None:
        with torch.no_grad():
            init(model)
    if dtype is not None:
        model = model.to(dtype)
    optimizer = OPTIMIZERS[opt](model.parameters(), lr=lr, **hp)
    mon = Monitor(optimizer)
    fired = None
    with np.errstate(all="ignore"):
        for t in range(steps):
            if schedule is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr * schedule(t)
            x, y = task.batch(gen)
            if batch_hook is not None:
                x, y = batch_hook(t, x, y)
            if dtype is not None and x.is_floating_point():
                x = x.to(dtype)
            optimizer.zero_grad()
            loss = task.loss(model, x, y)
            loss.float().backward() if dtype is not None else loss.backward()
            optimizer.step()
            mon.log(loss.item())
            if fired is None and mon.check() is not None:
                fired = t + 1
    with torch.no_grad():
        final = float(np.mean([float(task.loss(model, *(b if dtype is None else (b[0].to(dtype) if
                                                       b[0].is_floating_point() else b[0], b[1]))))
                               for b in task.eval_batches()]))
    kwargs = {"baseline": task.baseline(), **({"floor": 0.0} if floor else {})}
    return Result(mon.history, fired, final if math.isfinite(final) else math.inf, onset, kwargs)


def runner(task: Task, opt: str, **kw):
    """A case's ``run(seed)``: :func:`train` with these settings."""
    return lambda seed: train(task, opt, seed, **kw)


# ---------------------------------------------------------------------- failure makers


def dead_relus(model):
    """Every hidden ReLU of the first layer dead from step 1: a bias far below any pre-activation."""
    first = next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    first.bias.fill_(-50.0)


def jump(at_step, factor):
    """An lr schedule that multiplies lr by ``factor`` from loop index ``at_step`` on (a scheduler bug)."""
    return lambda t: factor if t >= at_step else 1.0


def restarts(period, floor=0.0):
    """Cosine annealing with warm restarts (SGDR; ``CosineAnnealingWarmRestarts(T_0=period,
    eta_min=floor * lr)``): from lr down to ``floor`` x lr over each ``period`` steps, then back up."""
    return lambda t: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (t % period) / period))


def ramp(steps, top):
    """An lr that grows geometrically to ``top`` x lr over the run (a warmup that never ends)."""
    return lambda t: top ** (t / steps)


def warmup(n):
    return lambda t: min(1.0, (t + 1) / n)


def nan_batch(at_step):
    """A batch with a NaN feature at loop index ``at_step`` (a corrupt record)."""
    def hook(t, x, y):
        if t == at_step:
            x = x.clone()
            x[0, 0] = float("nan")
        return x, y
    return hook
