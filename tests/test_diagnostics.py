"""Diagnostics: a labelled scenario suite (real runs, real optimizers, a Monitor), a
no-false-alarm check over every lab problem x default optimizer at its best lr, and
unit tests of the Monitor and of Diagnosis.

Every scenario is a real run whose verdict and cause code are known in advance; the
suite prints its accuracy ("diagnostics scenario accuracy: k/n").
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import adaopt
from adaopt.diagnostics import (ALARMS, VERDICTS, Diagnosis, History, Monitor, StopTraining, diagnose)
from adaopt.lab.problems import PROBLEMS, get_problem
from adaopt.lab.sweep import DEFAULT_OPTIMIZERS, run_sweep

try:
    import torch
except ImportError:  # the torch scenarios and tests skip
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny torch models run ~10x faster on one thread than fighting over two cores."""
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------- helpers


def run(problem, opt_cls, steps=None, seed=0, grad_hook=None, **hp):
    """A real run of an adaopt NumPy optimizer on a lab problem, watched by a Monitor."""
    P = get_problem(problem)
    x = P.x0(seed).copy()
    opt = opt_cls([x], **hp)
    mon = Monitor(opt)
    with np.errstate(all="ignore"):  # the diverging runs overflow on purpose
        for t in range(steps or P.default_steps):
            f, g = P.value_and_grad(x, step=t, seeds=seed)
            if grad_hook:
                g = grad_hook(t, g)
            mon.log(float(f))
            opt.step([g])
    return mon, P


def nan_at(step):
    """A grad_hook that puts a NaN into one coordinate of the gradient at loop index ``step``."""
    def hook(t, g):
        if t == step:
            g = g.copy()
            g[3] = np.nan
        return g
    return hook


def _perturbed(x0, seed):
    """``x0`` itself for seed 0, else ``x0`` plus 0.1 of a standard normal draw from ``default_rng(seed)``
    (what the lab problems' ``x0(seed)`` does)."""
    x = np.array(x0, dtype=np.float64)
    if seed:
        x += 0.1 * np.random.default_rng(seed).standard_normal(x.shape)
    return x


def lesson_rmsprop(steps=1000, seed=0):
    """The lesson's example 2: f(x) = x^2 from x0 = 10 (seed 0; perturbed by the seed otherwise),
    RMSprop lr=0.1, alpha=0.9."""
    x = _perturbed([10.0], seed)
    opt = adaopt.RMSprop([x], lr=0.1, alpha=0.9, conventions="lesson")
    mon = Monitor(opt)
    for _ in range(steps):
        mon.log(float(x @ x))
        opt.step([2 * x])
    return mon


def scale_drop_adam(betas, steps=1500, drop_at=200, seed=0):
    """Adam on s(t) * 0.5 * sum h (x - 1)^2, h = logspace(-2, 2, 10): s = 100 before ``drop_at``, then 1.
    The start is 0 (seed 0; perturbed by the seed otherwise)."""
    h = np.logspace(-2, 2, 10)
    x = _perturbed(np.zeros(10), seed)
    opt = adaopt.Adam([x], lr=1e-3, betas=betas)
    mon = Monitor(opt)
    for t in range(steps):
        s = 100.0 if t < drop_at else 1.0
        mon.log(float(s * 0.5 * np.sum(h * (x - 1) ** 2)))
        opt.step([s * h * (x - 1)])
    return mon


def fp16_adam(eps, steps=50, seed=0):
    """torch.optim.Adam on a float16 regression MLP whose first input column is always 0.

    That column's weights get exactly-zero gradients, so v-hat stays 0 there; torch keeps
    the state in float16, where eps = 1e-8 rounds to 0: the update is 0/0 = NaN.
    ``seed`` draws the data and the initial weights.
    Returns (monitor, whether every parameter is still finite).
    """
    torch.manual_seed(seed)
    X = torch.randn(64, 4)
    X[:, 0] = 0
    y = X @ torch.tensor([0.0, 1.0, -2.0, 0.5]) + 0.1
    X, y = X.half(), y.half()
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).half()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=eps)
    mon = Monitor(opt)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(X).squeeze(-1) - y) ** 2).mean()
        loss.backward()
        mon.log(loss)
        opt.step()
    return mon, all(bool(torch.isfinite(p).all()) for p in model.parameters())


def torch_mlp(lr, steps=300, act="tanh", seed=0):
    """adaopt.torch.AdamW on a tiny 3-16-1 MLP regression (float32)."""
    import adaopt.torch as at

    torch.manual_seed(seed)
    X = torch.randn(128, 3)
    y = torch.sin(X[:, :1]) + 0.5 * X[:, 1:2] * X[:, 2:3]
    layer = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[act]
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), layer(), torch.nn.Linear(16, 1))
    opt = at.AdamW(model.parameters(), lr=lr)
    mon = Monitor(opt)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(X) - y) ** 2).mean()
        loss.backward()
        mon.log(loss)
        opt.step()
    return mon


# ---------------------------------------------------------------------- the scenario suite


@dataclass(frozen=True)
class Scenario:
    name: str
    build: Callable[[int], Diagnosis]  # runs the scenario with a seed and returns its diagnosis
    verdicts: frozenset  # any of these is right
    code: frozenset  # the cause code(s) that go with them
    torch: bool = False
    check: Callable[[Diagnosis], None] | None = field(default=None, compare=False)  # further assertions

    def __str__(self) -> str:
        return self.name


def S(name, build, verdicts, code, **kw) -> Scenario:
    as_set = lambda v: frozenset([v] if isinstance(v, str) else v)  # noqa: E731
    return Scenario(name, build, as_set(verdicts), as_set(code), **kw)


def diag(problem, opt_cls, *, floor=False, **kw):
    """Build a scenario: run ``problem`` from ``x0(seed)`` on the seed's minibatches and diagnose it
    (with ``floor=f_opt`` if ``floor``)."""
    def build(seed):
        mon, P = run(problem, opt_cls, seed=seed, **kw)
        return mon.diagnose(floor=P.f_opt) if floor else mon.diagnose()
    return build


def _evidence_names_step_151(d: Diagnosis):
    assert any("step 151" in e for e in d.evidence), d.evidence
    assert d.steps == (151, 151)


def _fp16_advice(d: Diagnosis):
    assert any("0.0001" in a for a in d.advice), d.advice  # the float16 eps that works


CONVERGING = {"CONVERGING", "CONVERGED"}
HEALTHY_CODES = {"progress", "optimum", "noise_floor", "gradient_vanished"}

SCENARIOS = [
    # 1-3. lr far too high
    S("sgd_quadratic_lr0.05", diag("quadratic", adaopt.SGD, lr=0.05, steps=100), "DIVERGING", "lr_too_high"),
    S("sgd_quadratic_lr0.5_overflow", diag("quadratic", adaopt.SGD, lr=0.5, steps=500), "DIVERGING",
      "lr_too_high", check=lambda d: _assert_overflow_after_growth(d)),
    S("adam_digits_lr10", diag("digits_mlp", adaopt.Adam, lr=10.0, steps=500), "DIVERGING", "lr_too_high"),
    S("adam_breast_cancer_lr1", diag("breast_cancer", adaopt.Adam, lr=1.0, steps=1000), "DIVERGING",
      "lr_too_high"),
    # 4. lr 1e-4 of a good value
    S("sgd_quadratic_lr1.5e-6", diag("quadratic", adaopt.SGD, lr=1.5e-6), {"SLOW", "STALLED"}, "lr_too_low"),
    S("adam_quadratic_lr1e-5", diag("quadratic", adaopt.Adam, lr=1e-5), {"SLOW", "STALLED"}, "lr_too_low"),
    # 5. oscillation
    S("rmsprop_lesson_example2", lambda s: lesson_rmsprop(seed=s).diagnose(), "OSCILLATING", "oscillation"),
    S("adam_noisy_quadratic_lr0.5", diag("noisy_quadratic", adaopt.Adam, floor=True, lr=0.5, steps=500),
      "OSCILLATING", "oscillation"),
    # 6. AdaGrad's accumulator
    S("adagrad_breast_cancer_2000", diag("breast_cancer", adaopt.AdaGrad, lr=0.001, steps=2000), "STALLED",
      "adagrad_accumulator"),
    # 7. beta2 after a 100x drop of the gradient scale, and its contrast
    S("adam_beta2_0.9999_after_drop", lambda s: scale_drop_adam((0.9, 0.9999), seed=s).diagnose(), {"STALLED", "SLOW"},
      "beta2_memory", check=lambda d: _assert_no_higher_lr(d)),
    S("adam_beta2_0.99_after_drop", lambda s: scale_drop_adam((0.9, 0.99), seed=s).diagnose(), CONVERGING, HEALTHY_CODES),
    # 8. fp16 state with eps = 1e-8
    S("torch_fp16_adam_eps1e-8", lambda s: fp16_adam(1e-8, seed=s)[0].diagnose(), "NONFINITE", "eps_precision",
      torch=True, check=_fp16_advice),
    # 9. a NaN gradient
    S("adam_quadratic_nan_grad_at_151", diag("quadratic", adaopt.Adam, floor=True, lr=0.1, grad_hook=nan_at(150)),
      "NONFINITE", "nonfinite_gradient", check=_evidence_names_step_151),
    # 10. well-tuned runs
    S("adam_digits_lr0.01", diag("digits_mlp", adaopt.Adam, lr=0.01, steps=1000), CONVERGING, HEALTHY_CODES),
    S("adam_quadratic_lr0.1", diag("quadratic", adaopt.Adam, floor=True, lr=0.1), "CONVERGED", "optimum"),
    S("momentum_quadratic_lr0.02", diag("quadratic", adaopt.SGD, floor=True, lr=0.02, momentum=0.9), CONVERGING,
      HEALTHY_CODES),
    # 11. adaopt.torch.AdamW on a torch model
    S("torch_adamw_mlp_lr0.01", lambda s: torch_mlp(1e-2, seed=s).diagnose(), CONVERGING, HEALTHY_CODES, torch=True),
    # lr=10 blows the loss up ~6000x within 3 steps; judged over those first 30 steps (over 300, see below)
    S("torch_adamw_mlp_lr10_first30", lambda s: torch_mlp(10.0, steps=30, seed=s).diagnose(),
      {"DIVERGING", "NONFINITE"}, {"lr_too_high", "nonfinite_gradient", "nonfinite_update", "nonfinite_loss"},
      torch=True),
    # lr = 10 with ReLU: the loss jumps 1e6x, the units die and the loss sits still at the level of a
    # constant prediction. With seeds 0 and 2 that is its first value: DIVERGING (it never recovered).
    # With seed 1 the first loss (0.90) is above that level (0.67), and what holds it there is read
    # from the state: v-hat remembers the blow-up's gradients (g^2/v-hat ~ 1e-32), STALLED
    # beta2_memory. Both are true of the run; either way the evidence must report the blow-up.
    S("torch_adamw_relu_mlp_lr10_300", lambda s: torch_mlp(10.0, act="relu", seed=s).diagnose(),
      {"DIVERGING", "STALLED"}, {"lr_too_high", "beta2_memory"}, torch=True,
      check=lambda d: _assert_spike_reported(d)),
    # lr = 10 with tanh: the loss jumps 3000-11000x within 3 steps, then Adam recovers (95% below the
    # first loss by step 300): no alarm, and the evidence must still report the early blow-up. Whether
    # the end reads as CONVERGING, or SLOW because v-hat still remembers the blow-up (g^2/v-hat
    # ~ 1e-6, seeds 1 and 2; seed 0 has it as a note), depends on the seed.
    S("torch_adamw_mlp_lr10_300_recovers", lambda s: torch_mlp(10.0, seed=s).diagnose(), CONVERGING | {"SLOW"},
      HEALTHY_CODES | {"beta2_memory"}, torch=True, check=lambda d: _assert_spike_reported(d)),
    # the 2-D problems
    S("adam_beale_lr0.01", diag("beale", adaopt.Adam, floor=True, lr=0.01), CONVERGING, HEALTHY_CODES),
    S("adam_rosenbrock_lr0.01_3000", diag("rosenbrock", adaopt.Adam, floor=True, lr=0.01, steps=3000), CONVERGING,
      HEALTHY_CODES),
    S("sgd_saddle_lr0.05", diag("saddle", adaopt.SGD, floor=True, lr=0.05), CONVERGING, HEALTHY_CODES),
    # 3 steps: no trend, no noise level, no rate to judge
    S("adam_quadratic_3_steps", diag("quadratic", adaopt.Adam, floor=True, lr=0.1, steps=3), "TOO_SHORT",
      "too_short"),
]

def _assert_no_higher_lr(d: Diagnosis):
    """beta2's memory is cured by a shorter one, never by a higher lr (v-hat catches up, and the
    raised lr is then too large: a trial's regression told "raise lr about 246x" blew up)."""
    assert d.advice[0] == "beta2 = 0.999", d.advice
    assert not any(a.startswith(("raise", "or raise", "lr x")) for a in d.advice), d.advice


def _assert_spike_reported(d: Diagnosis):
    assert any("spiked" in e for e in d.evidence), d.evidence


def _assert_overflow_after_growth(d: Diagnosis):
    assert any("non-finite" in e for e in d.evidence), d.evidence
    assert d.signals["growth"] >= 10


#: Every scenario runs under these seeds and must give its verdict under each: a verdict that
#: holds for one start (or one set of minibatches) only may rest on the last bits of a chaotic
#: run, which change with the CPU, the BLAS kernel and the thread count.
SEEDS = (0, 1, 2)
CASES = [pytest.param(sc, seed, id=sc.name if seed == 0 else f"{sc.name}-seed{seed}")
         for sc in SCENARIOS for seed in SEEDS]

_RESULTS: dict[tuple[str, int], Diagnosis] = {}


def outcome(sc: Scenario, seed: int = 0) -> Diagnosis:
    """The scenario's diagnosis under ``seed``, computed once per session."""
    if (sc.name, seed) not in _RESULTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _RESULTS[sc.name, seed] = sc.build(seed)
    return _RESULTS[sc.name, seed]


def passes(sc: Scenario, d: Diagnosis) -> bool:
    return d.verdict in sc.verdicts and d.code in sc.code


def test_scenario_suite_is_big_enough_and_well_formed():
    assert len(SCENARIOS) >= 15
    assert len({sc.name for sc in SCENARIOS}) == len(SCENARIOS)
    for sc in SCENARIOS:
        assert sc.verdicts <= set(VERDICTS), sc
    assert {v for sc in SCENARIOS for v in sc.verdicts} == set(VERDICTS)  # every verdict is exercised


@pytest.mark.parametrize("sc, seed", CASES)
def test_scenario(sc: Scenario, seed: int):
    if sc.torch and torch is None:
        pytest.skip("needs torch")
    d = outcome(sc, seed)
    assert d.verdict in sc.verdicts and d.code in sc.code, (
        f"{sc.name} seed {seed}: expected {sorted(sc.verdicts)} / {sorted(sc.code)}, got {d.verdict} / {d.code}\n{d}")
    if sc.check is not None:
        sc.check(d)


def test_scenario_accuracy():
    suite = [(sc, seed) for sc in SCENARIOS for seed in SEEDS if torch is not None or not sc.torch]
    rows, ok = [], 0
    for sc, seed in suite:
        d = outcome(sc, seed)
        good = passes(sc, d)
        ok += good
        rows.append(f"  {'ok  ' if good else 'MISS'} {sc.name:36s} seed {seed}  expected "
                    f"{'/'.join(sorted(sc.verdicts)):22s} got {d.verdict} ({d.code})")
    print("\n".join(rows))
    print(f"diagnostics scenario accuracy: {ok}/{len(suite)} ({len(suite) // len(SEEDS)} scenarios x "
          f"{len(SEEDS)} seeds)")
    assert ok == len(suite), "\n".join(r for r in rows if "MISS" in r)


# ---------------------------------------------------------------------- the advice in scenario 8 works


@needs_torch
def test_fp16_eps_advice_keeps_the_run_finite():
    mon, finite = fp16_adam(1e-8)
    assert not finite
    mon, finite = fp16_adam(1e-4)  # the advised float16 eps
    assert finite
    d = mon.diagnose()
    assert d.verdict not in ALARMS, str(d)
    assert not mon.history["nonfinite"].any()


# ---------------------------------------------------------------------- no false alarms at the best lr

PROBLEM_NAMES = ["quadratic", "rosenbrock", "beale", "saddle", "noisy_quadratic", "sparse_logistic",
                 "breast_cancer", "digits_mlp"]
FALSE_ALARMS = ("DIVERGING", "NONFINITE", "STALLED")


@pytest.fixture(scope="module")
def best_lr_sweeps():
    """Every problem x default optimizer, default lrs and steps, seeds 0-2 (about 40 s in all).

    Built once per module, a problem at a time when first asked for (``-k digits`` runs only
    that problem's six sweeps).
    """
    cache = {}

    def sweeps(problem):
        if problem not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                cache[problem] = {o: run_sweep(problem, o, seeds=(0, 1, 2)) for o in DEFAULT_OPTIMIZERS}
        return cache[problem]

    return sweeps


def test_problem_list_is_the_labs():
    assert sorted(PROBLEM_NAMES) == sorted(PROBLEMS)


@pytest.mark.parametrize("problem", PROBLEM_NAMES)
def test_no_false_alarm_at_the_best_lr(best_lr_sweeps, problem):
    offenders = []
    for opt, sw in best_lr_sweeps(problem).items():
        i = sw.best_lr_index
        for j, seed in enumerate(sw.seeds):
            d = sw.diagnose(sw.row(i, j))
            if d.verdict in FALSE_ALARMS:
                offenders.append(f"{problem} / {opt} lr={sw.best_lr:g} seed={int(seed)}:\n{d}")
    assert not offenders, "false alarms at the best lr:\n" + "\n\n".join(offenders)


# ---------------------------------------------------------------------- unit tests: the Monitor


def _adam_quadratic(monitor: bool, steps=200, **mon_kw):
    P = get_problem("quadratic")
    x = P.x0(1).copy()
    opt = adaopt.Adam([x], lr=0.05)
    mon = Monitor(opt, **mon_kw) if monitor else None
    for t in range(steps):
        f, g = P.value_and_grad(x)
        if mon:
            mon.log(float(f))
        opt.step([g])
    return x, opt, mon


def test_monitor_never_changes_the_update_numpy():
    x0, opt0, _ = _adam_quadratic(False)
    x1, opt1, mon = _adam_quadratic(True)
    assert len(mon.history) == 200
    assert np.array_equal(x0, x1)  # bit-identical
    (name,) = opt0.state
    for key, value in opt0.state[name].items():
        assert np.array_equal(np.asarray(value), np.asarray(opt1.state[name][key])), key


def test_monitor_never_changes_the_update_numpy_sampled():
    P = get_problem("digits_mlp")

    def go(monitor):
        x = P.x0(0).copy()
        opt = adaopt.Adam([x], lr=0.01)
        mon = Monitor(opt, sample=100) if monitor else None  # sampled, with summaries every step
        for t in range(50):
            f, g = P.value_and_grad(x, step=t, seeds=0)
            if mon:
                mon.log(float(f))
            opt.step([g])
        return x

    assert np.array_equal(go(False), go(True))


@needs_torch
def test_monitor_never_changes_the_update_torch():
    def go(monitor):
        torch.manual_seed(0)
        X, y = torch.randn(64, 5), torch.randn(64, 1)
        model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        mon = Monitor(opt, every=1) if monitor else None
        for _ in range(40):
            opt.zero_grad()
            loss = ((model(X) - y) ** 2).mean()
            loss.backward()
            if mon:
                mon.log(loss)
            opt.step()
        if mon:
            assert len(mon.history) == 40
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(go(False), go(True)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("opt_cls", ["torch.optim.Adam", "adaopt.torch.Adam"])
def test_a_parameter_without_gradient_is_no_alarm(opt_cls):
    """A frozen or unused parameter (no .grad) is not stepped; the monitor must read its
    gradient as zero, not as a non-finite value, and judge the run as it would without it."""
    import adaopt.torch as at

    cls = torch.optim.Adam if opt_cls.startswith("torch") else at.Adam

    def go(frozen: bool):
        torch.manual_seed(0)
        X, y = torch.randn(64, 5), torch.randn(64, 1)
        model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        params = list(model.parameters()) + ([torch.nn.Parameter(torch.ones(3))] if frozen else [])
        mon = Monitor(cls(params, lr=1e-2), every=5)
        for _ in range(60):
            mon.optimizer.zero_grad()
            loss = ((model(X) - y) ** 2).mean()
            loss.backward()
            mon.log(loss.item())
            mon.optimizer.step()
        return mon.diagnose(), mon.history

    (plain, h0), (with_frozen, h1) = go(False), go(True)
    assert with_frozen.verdict == plain.verdict and with_frozen.verdict != "NONFINITE"
    assert with_frozen.code == plain.code
    assert np.all(h1["nonfinite"] == 0)


@pytest.mark.parametrize("kind", ["bfloat16", "transposed"])
def test_monitor_follows_parameters_it_reads_through_a_copy(kind):
    """bfloat16 parameters are read as float32 copies and non-contiguous ones through a
    reshape copy: those copies must be read anew every step, not kept from the first."""
    torch.manual_seed(0)
    if kind == "bfloat16":
        w = torch.nn.Parameter(torch.randn(6, 5, dtype=torch.bfloat16))
    else:
        w = torch.nn.Parameter(torch.randn(5, 6).t())
        assert not w.is_contiguous()
    opt = torch.optim.SGD([w], lr=0.1)
    mon = Monitor(opt, every=5)
    x = torch.randn(8, 5, dtype=w.dtype)
    before = []  # param_norm is the norm of the parameters a step started from
    for _ in range(5):
        opt.zero_grad()
        (x @ w.t()).float().pow(2).mean().backward()
        before.append(float(w.detach().double().norm()))
        opt.step()
        mon.log(1.0)
    h = mon.history
    assert mon.exact and np.all(h["update_norm"] > 0)
    np.testing.assert_allclose(h["param_norm"], before, rtol=1e-6)


def test_more_log_calls_between_steps_add_columns_to_the_same_row():
    x = np.array([3.0, -2.0])
    opt = adaopt.SGD([x], lr=0.1)
    mon = Monitor(opt)
    losses = []
    for k in range(30):
        opt.step([2 * x])
        losses.append(float(x @ x))
        mon.log(losses[-1])
        if k % 10 == 9:
            mon.log(val_loss=losses[-1] / 2)  # a second call for the same step
    h = mon.history
    np.testing.assert_allclose(h["loss"], losses)
    steps, val = h.series("val_loss")
    assert list(steps) == [10, 20, 30] and np.allclose(val, [losses[9] / 2, losses[19] / 2, losses[29] / 2])


def test_a_skipped_step_keeps_each_loss_on_its_own_row():
    """A GradScaler skips optimizer.step() on overflow: those iterations have no row, and the
    losses of the steps that ran stay on their rows."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4))
    opt = torch.optim.SGD([w], lr=0.05)
    mon = Monitor(opt)
    stepped = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(20):
            opt.zero_grad()
            loss = (w ** 2).sum()
            loss.backward()
            if k % 7 != 3:  # skipped on iterations 3, 10, 17
                opt.step()
                stepped.append(loss.item())
            mon.log(loss.item())
    np.testing.assert_allclose(mon.history["loss"], stepped)
    assert not any("already had one" in str(w.message) for w in caught)  # a skip now and then is no micro-batch


def test_lr_column_and_advice_follow_the_scheduler():
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(40)), torch.nn.Parameter(torch.randn(40))
    opt = torch.optim.Adam([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 1e-1}])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.1)
    mon = Monitor(opt, every=10)
    for _ in range(60):
        opt.zero_grad()
        loss = (a ** 2).sum() + (b ** 2).sum()
        loss.backward()
        opt.step()
        sched.step()
        mon.log(loss.item())
    steps, lr = mon.history.series("lr")
    np.testing.assert_allclose(lr, [1e-3 * 0.1 ** ((s - 1) // 20) for s in steps])  # group 0, as scheduled
    assert mon.meta["lr"] == pytest.approx(1e-3 * 0.1 ** 3)


def test_sparse_gradients_are_sampled_without_densifying():
    """An embedding's sparse gradient is read at the sampled coordinates only; on a model the
    sample covers whole, its norm is exact."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(40, 6, sparse=True)
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    mon = Monitor(opt)
    norms = []
    for k in range(5):
        opt.zero_grad()
        emb(torch.tensor([k, 7, 7, 30])).pow(2).sum().backward()
        norms.append(float(emb.weight.grad.coalesce().values().double().norm()))
        opt.step()
    assert mon.exact
    np.testing.assert_allclose(mon.history["grad_norm"], norms, rtol=1e-6)


def test_parameters_added_later_are_named_in_a_warning():
    a = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([a], lr=0.1)
    mon = Monitor(opt)
    b = torch.nn.Parameter(torch.ones(2))
    opt.add_param_group({"params": [b]})
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    with pytest.warns(UserWarning, match="add_param_group"):
        opt.step()
    assert len(mon.history) == 1


def test_log_before_or_after_the_step_gives_the_same_loss_column():
    P = get_problem("quadratic")

    def go(after: bool):
        x = P.x0(0).copy()
        opt = adaopt.Adam([x], lr=0.05)
        mon = Monitor(opt)
        for _ in range(60):
            f, g = P.value_and_grad(x)
            if not after:
                mon.log(float(f))
            opt.step([g])
            if after:
                mon.log(float(f))
        return mon.history

    before, after = go(False), go(True)
    assert before.present("loss").all() and after.present("loss").all()
    assert np.array_equal(before["loss"], after["loss"])
    assert np.array_equal(before.steps, after.steps)
    assert np.array_equal(before["grad_norm"], after["grad_norm"])


def _big_run(sample=None, steps=30):
    x = np.random.default_rng(0).standard_normal(10_000)
    opt = adaopt.Adam([x], lr=0.01)
    mon = Monitor(opt) if sample is None else Monitor(opt, sample=sample)
    exact = []
    for _ in range(steps):
        g = x.copy()  # f = 0.5 |x|^2
        exact.append(float(np.linalg.norm(g)))
        mon.log(0.5 * float(g @ g))
        opt.step([g])
    return mon, np.array(exact)


def test_sampled_norms_are_close_to_the_exact_ones():
    mon, exact = _big_run(sample=64)
    assert mon.meta["sampled"] <= 64
    rel = np.abs(mon.history["grad_norm"] / exact - 1)
    assert rel.max() < 0.2, rel.max()
    full, exact = _big_run(sample=10_000)  # the sample covers the model: exact
    assert np.allclose(full.history["grad_norm"], exact, rtol=1e-12, atol=0)


def test_default_sample_is_exact_for_small_models():
    P = get_problem("sparse_logistic")  # 500 parameters, below the default sample
    x = P.x0(0).copy()
    opt = adaopt.Adam([x], lr=0.01)
    mon = Monitor(opt)
    assert P.dim <= Monitor.__init__.__kwdefaults__["sample"]
    exact_g, exact_p = [], []
    for t in range(20):
        f, g = P.value_and_grad(x, step=t, seeds=0)
        exact_g.append(np.linalg.norm(g))
        exact_p.append(np.linalg.norm(x))
        mon.log(float(f))
        opt.step([g])
    assert mon.meta["sampled"] == P.dim
    assert np.allclose(mon.history["grad_norm"], exact_g, rtol=1e-12, atol=0)
    assert np.allclose(mon.history["param_norm"], exact_p, rtol=1e-12, atol=0)


def test_many_tensors_are_sampled_from_the_largest():
    from adaopt.diagnostics.monitor import MAX_TENSORS

    rng = np.random.default_rng(0)
    params = [rng.standard_normal(50 + i) for i in range(40)]
    opt = adaopt.SGD(params, lr=0.1)
    mon = Monitor(opt)
    for _ in range(5):
        opt.step([2 * p for p in params])
    h = mon.history
    assert len(mon._probe.chosen) == MAX_TENSORS
    assert mon._probe.chosen == list(range(40 - MAX_TENSORS, 40))  # the largest, in order
    exact = np.sqrt(sum(float(p @ p) for p in params))  # after 5 steps; the last row saw the 4th
    assert 0.5 < h["param_norm"][-1] / (exact / 0.8) < 2.0  # an estimate, scaled to all coordinates
    assert not mon.exact


def test_stop_on_nonfinite_raises_at_the_nan_step():
    P = get_problem("quadratic")
    x = P.x0(0).copy()
    opt = adaopt.Adam([x], lr=0.1)
    mon = Monitor(opt, stop_on=("NONFINITE",))
    hook = nan_at(150)
    with pytest.raises(StopTraining) as info:
        for t in range(500):
            f, g = P.value_and_grad(x)
            mon.log(float(f))
            opt.step([hook(t, g)])
    assert t == 150  # raised by the step that got the NaN, not later
    d = info.value.diagnosis
    assert d.verdict == "NONFINITE" and d.code == "nonfinite_gradient"
    assert d.signals["first_nonfinite_step"] == 151
    assert mon.history.steps[-1] == 151
    assert "NONFINITE" in str(info.value)


def test_stop_on_diverging_raises_early():
    P = get_problem("quadratic")
    x = P.x0(0).copy()
    opt = adaopt.SGD([x], lr=0.05)
    mon = Monitor(opt, stop_on=ALARMS)
    with np.errstate(all="ignore"), pytest.raises(StopTraining) as info:
        for _ in range(100):
            f, g = P.value_and_grad(x)
            mon.log(float(f))
            opt.step([g])
    assert info.value.diagnosis.verdict == "DIVERGING"
    assert len(mon.history) < 100


def test_check_is_none_on_a_healthy_run_and_not_on_a_diverging_one():
    _, _, mon = _adam_quadratic(True, steps=100)
    assert mon.check() is None
    mon, _ = run("quadratic", adaopt.SGD, lr=0.05, steps=60)
    found = mon.check()
    assert found is not None and found.verdict == "DIVERGING"


def test_check_asks_diagnose_at_once_when_the_loss_passes_1_5x_and_then_rarely(monkeypatch):
    """Above 1.5x its first loss, check() asked diagnose() on the whole history at every step: a
    trial's check() went from 123 us to 26 ms a call once an lr bug took the loss up. It asks at
    the first step there, and again once the rows grew 5%: 47 times over 1000 steps here."""
    from adaopt.diagnostics import monitor

    calls = []
    real = monitor.diagnose
    monkeypatch.setattr(monitor, "diagnose", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = np.ones(8)
    opt = adaopt.SGD([x], lr=1e-3)
    mon = Monitor(opt, every=10)
    rng = np.random.default_rng(0)
    first_ask = None
    for t in range(1100):
        opt.step([np.full(8, 0.1)])
        level = 1.0 if t < 100 else 2.5  # a low first stretch, then 2.5x: told (or not) by diagnose
        mon.log(level * (1 + 0.05 * rng.standard_normal()))
        mon.check()
        if calls and first_ask is None:
            first_ask = t
    assert first_ask is not None and first_ask <= 102, first_ask
    assert 20 <= len(calls) <= 80, len(calls)


@pytest.mark.parametrize("after", [False, True])
def test_micro_batch_losses_logged_for_one_step_keep_the_first_and_warn_once(after):
    """Gradient accumulation with mon.log() on each micro-batch: the row kept the last micro-batch's
    loss (logged before the step) or the first (after it), silently, and the live check saw every
    one of them. Now each step keeps its first, the live check sees one a step, and one warning
    says why."""
    x = np.ones(4)
    opt = adaopt.SGD([x], lr=1e-3)
    mon = Monitor(opt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(12):
            if after:
                opt.step([np.full(4, 0.1)])
            for micro in range(4):
                mon.log(10.0 * step + micro + 1)
            if not after:
                opt.step([np.full(4, 0.1)])
    said = [w for w in caught if "losses were logged for optimizer steps that already had one" in str(w.message)]
    assert len(said) == 1, [str(w.message) for w in caught]
    np.testing.assert_array_equal(mon.history["loss"], 10.0 * np.arange(12) + 1)
    assert len(mon._watch.values) == 12


def test_check_is_none_before_any_step():
    x = np.ones(3)
    assert Monitor(adaopt.Adam([x], lr=0.1)).check() is None


@pytest.mark.parametrize("kwargs, name", [({"every": 0}, "every"), ({"every": 2.5}, "every"),
                                          ({"sample": 0}, "sample"), ({"stop_on": ("SLOW",)}, "stop_on"),
                                          ({"stop_on": ("CONVERGED", "NONFINITE")}, "stop_on")])
def test_bad_monitor_arguments_raise_value_error_naming_them(kwargs, name):
    x = np.ones(3)
    with pytest.raises(ValueError, match=name):
        Monitor(adaopt.Adam([x], lr=0.1), **kwargs)


def test_monitor_of_something_else_raises_type_error():
    with pytest.raises(TypeError, match="object"):
        Monitor(object())


def test_adagrad_summary_is_the_optimizers_effective_lr():
    P = get_problem("quadratic")
    x = P.x0(0).copy()
    opt = adaopt.AdaGrad([x], lr=0.5)
    mon = Monitor(opt, every=7)
    expected = {}
    for t in range(1, 51):
        f, g = P.value_and_grad(x)
        mon.log(float(f))
        opt.step([g])
        if t == 1 or t % 7 == 0:
            expected[t] = float(np.median(opt.effective_lr()))
    steps, eff = mon.history.series("eff_lr_p50")
    assert steps.tolist() == sorted(expected)
    assert np.allclose(eff, [expected[int(s)] for s in steps], rtol=1e-12, atol=0)
    assert eff[0] / eff[-1] > 1  # the accumulator only grows


def test_adam_summary_has_the_bias_correction_factors():
    _, _, mon = _adam_quadratic(True, steps=45)
    steps, bc1 = mon.history.series("bc1")
    assert steps.tolist() == [1, 10, 20, 30, 40]
    assert np.allclose(bc1, 1 / (1 - 0.9 ** steps), rtol=1e-12, atol=0)
    steps2, bc2 = mon.history.series("bc2")
    assert np.array_equal(steps, steps2)
    assert np.allclose(bc2, 1 / (1 - 0.999 ** steps), rtol=1e-12, atol=0)
    lr_steps, lr = mon.history.series("lr")  # beside every logged loss, as the live check read it
    assert np.array_equal(lr_steps, mon.history.steps) and np.all(lr == 0.05)


def test_remove_detaches():
    x = np.array([3.0, -2.0])
    opt = adaopt.Adam([x], lr=0.1)
    mon = Monitor(opt)
    for _ in range(5):
        opt.step([2 * x])
    mon.remove()
    for _ in range(5):
        opt.step([2 * x])
    assert len(mon.history) == 5
    mon.remove()  # twice is harmless


def test_monitor_as_a_context_manager():
    x = np.array([3.0, -2.0])
    opt = adaopt.Adam([x], lr=0.1)
    with Monitor(opt) as mon:
        for _ in range(7):
            mon.log(float(x @ x))
            opt.step([2 * x])
    opt.step([2 * x])
    assert len(mon.history) == 7
    assert mon.history.present("loss").all()


@needs_torch
def test_remove_detaches_torch():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    with Monitor(opt) as mon:
        for _ in range(3):
            p.grad = torch.ones(3)
            opt.step()
    p.grad = torch.ones(3)
    opt.step()
    assert len(mon.history) == 3


# ---------------------------------------------------------------------- unit tests: Diagnosis


def test_diagnosis_str_names_the_verdict_and_the_evidence():
    mon, _ = run("quadratic", adaopt.SGD, lr=0.05, steps=100)
    d = mon.diagnose()
    text = str(d)
    assert text.startswith("DIVERGING: ")
    assert d.cause in text
    assert d.evidence and all(e in text for e in d.evidence)
    assert d.advice and all(a in text for a in d.advice)
    assert "lr = 0.05 -> 0.005" in text  # the advice has a concrete value


def test_diagnosis_to_dict_is_json_serialisable():
    builds = [lambda: run("quadratic", adaopt.SGD, lr=0.5, steps=200)[0].diagnose(),  # overflow: inf signals
              lambda: scale_drop_adam((0.9, 0.9999)).diagnose(),
              lambda: run("quadratic", adaopt.Adam, lr=0.1)[0].diagnose(floor=0.0)]
    for build in builds:
        d = build()
        data = d.to_dict()
        back = json.loads(json.dumps(data))
        assert back["verdict"] == d.verdict and back["code"] == d.code
        assert back["evidence"] == d.evidence and back["advice"] == d.advice
        assert set(back["signals"]) == set(d.signals)
        for value in back["signals"].values():
            assert value is None or isinstance(value, (int, float, str, bool))


def test_diagnose_accepts_a_dict_and_records():
    mon, _ = run("quadratic", adaopt.SGD, lr=0.05, steps=100)
    h = mon.history
    as_dict = {name: [r.get(name) for r in h.records()] for name in h.columns}
    for source in (h, as_dict, h.records()):
        d = diagnose(source)
        assert (d.verdict, d.code) == ("DIVERGING", "lr_too_high")


def test_diagnose_refuses_empty_and_bad_inputs():
    with pytest.raises(ValueError):
        diagnose(History({"step": []}))
    with pytest.raises(TypeError):
        diagnose(42)
    with pytest.raises(ValueError, match="budget"):
        diagnose({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.0]}, budget=0)


def test_target_and_budget_make_slow_mean_out_of_reach():
    steps = np.arange(1, 201)
    loss = 10 * np.exp(-steps / 400)  # a steady, slow fall
    h = {"step": steps, "loss": loss}
    reached = diagnose(h, target=float(loss[150]))  # above the recent window's median
    assert (reached.verdict, reached.code) == ("CONVERGED", "reached_target")
    far = diagnose(h, target=1e-3, budget=300)
    assert far.verdict == "SLOW", str(far)
    near = diagnose(h, target=float(loss[-1]) * 0.9, budget=10_000)
    assert near.verdict == "CONVERGING", str(near)


def test_verdict_and_alarm_lists():
    assert VERDICTS == ("DIVERGING", "NONFINITE", "OSCILLATING", "STALLED", "SLOW", "CONVERGING", "CONVERGED",
                        "TOO_SHORT")
    assert set(ALARMS) == {"DIVERGING", "NONFINITE"}


# ---------------------------------------------------------------------- issue 13: noise, causes, early warnings


def test_flat_noise_logs_of_20_rows_are_not_oscillating():
    """A per-epoch log of pure noise (~20 rows) is no oscillation: a sign change of independent
    noise has probability 2/3, and 20 rows cannot show more than that at 1% significance."""
    verdicts = []
    for seed in range(60):
        loss = 0.5 + 0.01 * np.random.default_rng(seed).standard_normal(20)
        verdicts.append(diagnose({"step": list(range(1, 21)), "loss": list(loss)}).verdict)
    assert "OSCILLATING" not in verdicts, verdicts


def test_negative_losses_without_a_floor_are_not_at_the_optimum():
    steps = np.arange(1, 201)
    loss = -1.0 - 0.5 * (1 - np.exp(-steps / 3))  # falls to -1.5 and stays: the lowest loss is no optimum
    d = diagnose({"step": steps, "loss": loss})
    assert d.code != "optimum", str(d)


@pytest.mark.parametrize("name, value", [("floor", float("nan")), ("baseline", "2.3"), ("baseline", True)])
def test_floor_and_baseline_must_be_finite_numbers(name, value):
    with pytest.raises(ValueError, match=name):
        diagnose({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.0]}, **{name: value})


def test_momentum_advice_reads_the_current_momentum():
    """SGD crawling along an ill-conditioned quadratic: momentum = 0.9 is advised only when not set."""
    def crawl(momentum):
        h = np.logspace(-6, 0, 20)
        x = 1 / np.sqrt(h)  # every direction holds the same share of the first loss
        opt = adaopt.SGD([x], lr=1.0, momentum=momentum)
        mon = Monitor(opt)
        for _ in range(400):
            mon.log(float(0.5 * np.sum(h * x * x)))
            opt.step([h * x])
        return mon.diagnose(floor=0.0)

    plain, heavy = crawl(0.0), crawl(0.9)
    assert plain.code == "ill_conditioned" and any(a.startswith("momentum = 0.9") for a in plain.advice), str(plain)
    assert not any(a.startswith("momentum = 0.9") for a in heavy.advice), str(heavy)


def test_check_fires_on_a_rise_from_the_best_window_not_only_from_the_first_loss():
    from adaopt.diagnostics.verdict_watch import RiseWatch

    rng = np.random.default_rng(1)
    first = 2.3
    losses = list(np.maximum(first * np.exp(-np.arange(300) / 20), 2e-4) * (1 + 0.1 * rng.standard_normal(300)))
    losses += list(1.25 * (1 + 0.1 * rng.standard_normal(60)))  # back up to 1.25: below 1.5 x 2.3
    watch, fired = RiseWatch(), None
    for i, x in enumerate(losses):
        watch.push(float(x))
        if fired is None and watch.rise() is not None:
            fired = i
    assert fired is not None and 300 <= fired <= 320, fired
    quiet = RiseWatch()  # the same noise without the climb: never
    for x in losses[:300]:
        quiet.push(float(x))
        assert quiet.rise() is None


@pytest.mark.parametrize("seed", range(5))
def test_check_tells_a_late_blow_up_within_20_steps_and_not_a_noisy_plateau(seed):
    """The CUSUM half of the live check: a loss that jumps to 3x its plateau (noise 10%) is told
    within 20 logged values of the jump, the plateau alone never (600 values)."""
    from adaopt.diagnostics.verdict_watch import RiseWatch

    rng = np.random.default_rng(seed)
    base = np.maximum(2.3 * np.exp(-np.arange(600) / 30), 0.05)
    plateau = base * np.exp(0.1 * rng.standard_normal(600))
    quiet = RiseWatch()
    for x in plateau:
        quiet.push(float(x))
        assert quiet.rise() is None
    jump = plateau.copy()
    jump[400:] *= np.linspace(1.5, 6.0, 200)  # from step 400 the lr jumped: the loss climbs away
    watch, fired = RiseWatch(), None
    for i, x in enumerate(jump):
        watch.push(float(x))
        if fired is None and watch.rise() is not None:
            fired = i
    assert fired is not None and 400 <= fired <= 420, fired


@pytest.mark.parametrize("seed", range(5))
def test_check_tells_a_creep_after_a_descent_from_the_plateau_s_noise_not_the_descent_s(seed):
    """The noise between blocks is measured where the run sits: a descent's block-to-block
    differences (its curve) made the bar 3-9x too high, and a creep from a noisy floor was told
    30-40 values after it began. Here the loss doubles every 14 values from value 260."""
    from adaopt.diagnostics.verdict_watch import RiseWatch

    rng, t = np.random.default_rng(seed), np.arange(400)
    floor = np.maximum(2.3 * np.exp(-t / 40), 0.08)
    creep = floor.copy()
    creep[260:] = 0.08 * np.exp((t[260:] - 260) / 20)
    noise = 1 + 0.4 * np.abs(rng.standard_normal(400))  # one-sided, as minibatch losses above a floor
    watch, quiet, fired = RiseWatch(), RiseWatch(), None
    for i, (x, q) in enumerate(zip(creep * noise, floor * noise)):
        watch.push(float(x))
        quiet.push(float(q))
        assert quiet.rise() is None, i  # the same noise on the floor: never
        if fired is None and watch.rise() is not None:
            fired = i
    assert fired is not None and 260 <= fired <= 290, fired


def test_monitor_counts_zero_gradients_and_updates_that_round_away():
    torch = pytest.importorskip("torch")
    import adaopt.torch as at

    w = torch.nn.Parameter(torch.full((64,), 100.0, dtype=torch.bfloat16))
    opt = at.SGD([w], lr=1e-3)  # a step of 1e-3 * g against an ulp of 0.5 at 100: rounds away
    mon = Monitor(opt)
    for _ in range(3):
        g = torch.ones(64, dtype=torch.bfloat16)
        g[:16] = 0  # a quarter of the gradient exactly 0
        w.grad = g
        opt.step()
    h = mon.history
    assert np.allclose(h["grad_zero"], 0.25) and np.allclose(h["update_lost"], 1.0)


def test_stop_on_takes_one_verdict_as_a_string():
    """Monitor(opt, stop_on="DIVERGING") is one verdict (as the DiagnosisCallbacks take it), not
    the nine letters of a string."""
    opt = adaopt.SGD(np.zeros(3), lr=0.1)
    assert Monitor(opt, stop_on="DIVERGING").stop_on == ("DIVERGING",)
    with pytest.raises(ValueError, match="only DIVERGING, NONFINITE"):
        Monitor(opt, stop_on="SLOW")


@pytest.mark.parametrize("bad", ["abc", [1.0, 2.0], np.array([1.0, 2.0]), None.__class__])
def test_log_refuses_a_loss_that_is_not_one_number(bad):
    mon = Monitor(adaopt.SGD(np.zeros(3), lr=0.1))
    with pytest.raises(TypeError, match="loss=.*one number"):
        mon.log(bad)
    assert len(mon.history) == 0


def test_check_tells_a_nan_at_once_while_the_loss_sits_above_1_5x_its_first():
    """While the loss sat at 2x a low first value (diagnose: not an alarm, cached), a NaN from step
    1501 waited for the next ask, 5% of the rows later: check() said NONFINITE at 1546, its replay
    at 1501."""
    from adaopt.diagnostics.verdict_watch import first_alarm

    rng = np.random.default_rng(0)
    x = np.array([3.0, -2.0])
    opt = adaopt.SGD([x], lr=0.01)
    mon = Monitor(opt)
    loss = np.r_[1.0, 2.0 + 0.05 * rng.standard_normal(1999)]
    loss[1500:] = np.nan
    fired = None
    for i, value in enumerate(loss.tolist()):
        opt.step([2 * x])
        mon.log(loss=value)
        found = mon.check()
        if found is not None:
            fired = (i + 1, found.verdict)
            break
    assert fired == (1501, "NONFINITE"), fired
    assert first_alarm(mon.history) == 1501


@pytest.mark.parametrize("seed", [0, 1])
def test_check_and_its_replay_fire_at_the_same_step_on_a_loss_logged_every_10_steps(seed):
    """check() counted its re-asks of diagnose() in rows and its replay in losses: on a loss
    logged every 10 steps above 1.5x its first value they fired at 235 and 1601."""
    from adaopt.diagnostics.verdict_watch import first_alarm

    rng = np.random.default_rng(seed)
    t = np.arange(3000)
    loss = np.where(t < 1500, 2.0, 2.0 * np.exp((t - 1500) / 400.0)) + 0.05 * rng.standard_normal(3000)
    loss[0] = 1.0
    x = np.array([3.0, -2.0])
    opt = adaopt.SGD([x], lr=0.01)
    mon = Monitor(opt)
    fired = None
    for i in range(3000):
        opt.step([2 * x])
        if i % 10 == 0:
            mon.log(loss=float(loss[i]))
        if mon.check() is not None and fired is None:
            fired = i + 1
    assert fired is not None and fired == first_alarm(mon.history), (fired, first_alarm(mon.history))
