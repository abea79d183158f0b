"""The diagnosis on the fast subset of the labelled corpus (benchmarks/corpus): real minibatch runs
under seeds 0, 1, 2, each of which must get its label; healthy runs no alarm (neither from
diagnose() nor from the live check()); blow-ups caught by check() within 20 logged steps of their
onset; and, for a few failures, the twin run with the advice applied must end measurably better.

The whole corpus (69 cases) runs in ``benchmarks/bench_diagnose.py`` (``make bench``).
"""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from benchmarks.corpus import CASES, judge  # noqa: E402
from benchmarks.corpus.case import SEEDS, twin_better  # noqa: E402

FAST = [c for c in CASES if c.fast]
_RUNS: dict = {}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def result(c, seed, which="run"):
    if (c.name, seed, which) not in _RUNS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _RUNS[c.name, seed, which] = (c.twin if which == "twin" else c.run)(seed)
    return _RUNS[c.name, seed, which]


def test_corpus_is_big_enough_and_covers_the_failure_classes():
    assert len(CASES) >= 60 and sum(c.healthy for c in CASES) >= 20
    assert len({c.name for c in CASES}) == len(CASES)
    kinds = {c.kind for c in CASES}
    assert {"lr_high_fast", "lr_high_late", "lr_high_creep", "lr_high_collapse", "lr_low", "dead_units", "beta2",
            "adagrad", "bias_off", "round_away", "nan", "oscillation", "healthy"} <= kinds
    for c in CASES:
        assert c.healthy or c.twin is not None or c.kind in ("nan", "oscillation", "lr_high_fast"), c.name
    assert len(FAST) >= 15 and {c.kind for c in FAST} >= {"healthy", "dead_units", "round_away", "bias_off",
                                                          "lr_low", "lr_high_late"}


@pytest.mark.parametrize("c", FAST, ids=str)
def test_fast_case_gets_its_label_under_every_seed(c):
    got = []
    for seed in SEEDS:
        r = result(c, seed)
        d = r.diagnose()
        if not judge(c, d):
            got.append(f"seed {seed}: expected {sorted(c.verdicts)} / {sorted(c.codes)}, got {d.verdict} / {d.code}\n{d}")
        if c.healthy:
            assert r.fired is None, f"{c.name} seed {seed}: check() fired at step {r.fired} on a healthy run"
        if c.kind == "lr_high_late":
            assert r.fired is not None and r.fired - r.onset <= 20, (c.name, seed, r.fired, r.onset)
    assert not got, "\n".join(got)


TWINS = ["digits_mlp_dead_relu", "digits_mlp_adam_nobc", "digits_mlp_bf16_round_away", "np_adagrad_quadratic"]


@pytest.mark.parametrize("name", TWINS)
def test_following_the_advice_makes_the_twin_better(name):
    c = next(c for c in CASES if c.name == name)
    d = result(c, 0).diagnose()
    assert judge(c, d)
    for seed in SEEDS:
        run, twin = result(c, seed), result(c, seed, "twin")
        assert twin_better(run, twin, c.better), (name, seed, run.final, twin.final)
