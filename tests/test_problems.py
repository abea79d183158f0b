"""The lab's problems: exact gradients, batching, common random numbers, optima, registry."""

import subprocess
import sys

import numpy as np
import pytest

from adaopt.lab import PROBLEMS, Problem, get_problem
from adaopt.lab.problems import DigitsMLP

NAMES = list(PROBLEMS)
STOCHASTIC = [n for n in NAMES if PROBLEMS[n].stochastic]
DETERMINISTIC = [n for n in NAMES if not PROBLEMS[n].stochastic]
KNOWN_OPT = [n for n in NAMES if PROBLEMS[n].x_opt is not None]


def test_registry_holds_the_eight_problems():
    assert NAMES == ["quadratic", "rosenbrock", "beale", "saddle", "noisy_quadratic",
                     "sparse_logistic", "breast_cancer", "digits_mlp"]
    assert STOCHASTIC == ["noisy_quadratic", "sparse_logistic", "digits_mlp"]
    for name, p in PROBLEMS.items():
        assert isinstance(p, Problem) and p.name == name and get_problem(name) is p
        assert p.title and p.description and p.default_steps > 0
        assert (p.bounds is not None) == (p.dim == 2)
        assert p.x0().shape == (p.dim,)
    assert PROBLEMS["digits_mlp"].dim == 64 * 32 + 32 + 32 * 10 + 10
    assert PROBLEMS["breast_cancer"].dim == 31


def test_unknown_problem_lists_the_choices():
    with pytest.raises(ValueError, match="'nope'") as info:
        get_problem("nope")
    for name in NAMES:
        assert name in str(info.value)


def test_importing_the_lab_needs_only_numpy():
    code = ("import sys, adaopt.lab; adaopt.lab.PROBLEMS['digits_mlp'].x0(); "
            "print(','.join(m for m in ('sklearn', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_missing_sklearn_names_the_problem(monkeypatch):
    for mod in ("sklearn", "sklearn.datasets", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, mod, None)
    fresh = DigitsMLP()                      # not the registry's instance: no cached data
    with pytest.raises(ImportError, match=r"'digits_mlp' needs scikit-learn.*adaopt\[lab\]"):
        fresh.loss(fresh.x0())


# -- gradients ------------------------------------------------------------------------


def _fd_check(p, x, *, step=0, seed=0):
    """Central differences of value_and_grad's f (same minibatch for every evaluation),
    along coordinates (all of them, or 300 for the MLP) and 5 random directions, in one
    batched call."""
    rng = np.random.default_rng(7)
    f, g = p.value_and_grad(x, step=step, seeds=seed)
    coords = np.arange(p.dim) if p.dim <= 500 else rng.choice(p.dim, 300, replace=False)
    dirs = np.concatenate([np.eye(p.dim)[coords], rng.standard_normal((5, p.dim))])
    h = 1e-6
    fp, _ = p.value_and_grad(x + h * dirs, step=step, seeds=seed)
    fm, _ = p.value_and_grad(x - h * dirs, step=step, seeds=seed)
    fd = (fp - fm) / (2 * h)
    if p.name == "noisy_quadratic":          # f is the noise-free value: compare with g - noise
        g = g - p.value_and_grad(np.zeros(p.dim), step=step, seeds=seed)[1]
    np.testing.assert_allclose(fd, dirs @ g, rtol=1e-5, atol=1e-6 * (1 + np.abs(g).max()))
    return f, g


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(name):
    p = PROBLEMS[name]
    _fd_check(p, p.x0())
    _fd_check(p, p.x0(seed=1), step=3, seed=5)


def test_noisy_quadratic_value_is_noise_free_but_gradient_is_not():
    p = PROBLEMS["noisy_quadratic"]
    x = p.x0()
    f, g = p.value_and_grad(x, step=1, seeds=2)
    assert f == p.loss(x)
    assert f == pytest.approx(0.5 * np.sum(p.h * x * x), rel=1e-14)
    assert np.abs(g - p.h * x).max() > 0.1


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_dtypes(name):
    p = PROBLEMS[name]
    for shape in [(p.dim,), (3, p.dim), (2, 2, p.dim)]:
        x = np.broadcast_to(p.x0(), shape) + 0.01 * np.arange(np.prod(shape[:-1])).reshape(
            shape[:-1] + (1,))
        f, g = p.value_and_grad(x, step=1, seeds=3)
        assert f.shape == shape[:-1] and g.shape == shape
        assert f.dtype == g.dtype == np.float64
        assert p.loss(x).shape == shape[:-1] and p.loss(x).dtype == np.float64
        for v in p.metrics(x).values():
            assert v.shape == shape[:-1]
    with pytest.raises(ValueError, match="dim"):
        p.value_and_grad(np.zeros(p.dim + 1))


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_row_by_row(name):
    p = PROBLEMS[name]
    x = np.stack([p.x0(s) for s in (0, 1, 2)])
    seeds = np.array([4, 9, 4])
    f, g = p.value_and_grad(x, step=2, seeds=seeds)
    loss, metrics = p.loss(x), p.metrics(x)
    for i in range(3):
        fi, gi = p.value_and_grad(x[i], step=2, seeds=seeds[i])
        np.testing.assert_allclose(f[i], fi, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g[i], gi, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(loss[i], p.loss(x[i]), rtol=1e-12)
        for k, v in p.metrics(x[i]).items():
            np.testing.assert_allclose(metrics[k][i], v, rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_and_step_give_identical_output(name):
    p = PROBLEMS[name]
    x = p.x0(1)
    a = p.value_and_grad(x, step=5, seeds=3)
    b = p.value_and_grad(x, step=5, seeds=3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    if not p.stochastic:                     # deterministic problems ignore step and seeds
        c = p.value_and_grad(x, step=6, seeds=np.int64(4))
        assert np.array_equal(a[1], c[1])


@pytest.mark.parametrize("name", STOCHASTIC)
def test_seeds_and_steps_change_the_minibatch(name):
    p = PROBLEMS[name]
    x = p.x0(1)
    g = p.value_and_grad(x, step=5, seeds=3)[1]
    assert not np.allclose(g, p.value_and_grad(x, step=5, seeds=4)[1])
    assert not np.allclose(g, p.value_and_grad(x, step=6, seeds=3)[1])


@pytest.mark.parametrize("name", STOCHASTIC)
def test_rows_with_the_same_seed_share_the_noise(name):
    p = PROBLEMS[name]
    x = np.stack([p.x0(1)] * 4)
    g = p.value_and_grad(x, step=1, seeds=[0, 1, 0, 1])[1]
    assert np.array_equal(g[0], g[2]) and np.array_equal(g[1], g[3])
    assert not np.allclose(g[0], g[1])
    # seeds broadcast over leading axes: a (2, 2) batch with per-column seeds
    _, g2 = p.value_and_grad(x.reshape(2, 2, p.dim), step=1, seeds=np.array([0, 1]))
    np.testing.assert_array_equal(g2.reshape(4, p.dim), g)
    with pytest.raises(TypeError):
        p.value_and_grad(x, seeds=0.5)


def test_noisy_quadratic_noise_does_not_depend_on_x():
    """Common random numbers: the same seed gives the same noise at different points."""
    p = PROBLEMS["noisy_quadratic"]
    x = np.stack([p.x0(1), p.x0(2), p.x0(3)])
    g = p.value_and_grad(x, step=4, seeds=7)[1]
    noise = g - p.h * x
    np.testing.assert_allclose(noise, noise[[0, 0, 0]], atol=1e-14)
    assert 0.5 < np.std(noise / np.sqrt(p.h)) < 1.5


# -- optima and starts ----------------------------------------------------------------


@pytest.mark.parametrize("name", KNOWN_OPT)
def test_optimum_value_and_zero_gradient(name):
    p = PROBLEMS[name]
    assert p.f_opt is not None
    assert p.loss(p.x_opt) == pytest.approx(p.f_opt, abs=1e-15)
    f, g = p.value_and_grad(p.x_opt)
    assert f == pytest.approx(p.f_opt, abs=1e-15)
    if not p.stochastic:
        assert np.abs(g).max() < 1e-12
    # the start is not already optimal
    assert p.loss(p.x0()) > p.f_opt + 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_starts(name):
    p = PROBLEMS[name]
    x0 = p.x0()
    assert x0.dtype == np.float64 and np.isfinite(p.loss(x0))
    assert np.array_equal(x0, p.x0(0)) and np.array_equal(p.x0(1), p.x0(1))
    assert not np.array_equal(x0, p.x0(1))
    x0[:] = 123.0                            # x0 returns a fresh array each time
    assert not np.array_equal(p.x0(), x0)


def test_canonical_starts():
    np.testing.assert_array_equal(get_problem("rosenbrock").x0(), [-1.2, 1.0])
    np.testing.assert_array_equal(get_problem("beale").x0(), [1.0, 1.0])
    np.testing.assert_array_equal(get_problem("saddle").x0(), [1.0, 1e-3])
    np.testing.assert_array_equal(get_problem("quadratic").x0(), np.zeros(10))
    np.testing.assert_array_equal(get_problem("noisy_quadratic").x0(), np.ones(100))
    for name in ("sparse_logistic", "breast_cancer"):
        np.testing.assert_array_equal(get_problem(name).x0(), np.zeros(get_problem(name).dim))
    q = get_problem("quadratic")
    assert q.h.max() / q.h.min() == pytest.approx(1e4)
    mlp = get_problem("digits_mlp")
    w1, b1, w2, b2 = mlp.unpack(mlp.x0())
    assert w1.shape == (64, 32) and w2.shape == (32, 10)
    assert not b1.any() and not b2.any()
    assert np.abs(w1).max() <= np.sqrt(6 / 96) and np.abs(w2).max() <= np.sqrt(6 / 42)


def test_data_problems_look_right():
    X, y = get_problem("sparse_logistic").data
    assert X.shape == (2000, 500) and set(np.unique(X)) == {0.0, 1.0}
    assert np.all(X.sum(axis=1) == 10)
    counts = X.sum(axis=0)
    assert counts[:10].mean() > 20 * counts[-100:].mean()   # Zipf: rare features are rare
    assert 0.3 < y.mean() < 0.7
    Xb, _ = get_problem("breast_cancer").data
    assert Xb.shape == (569, 30) and Xb.max() > 1e3 and Xb.std(axis=0).min() < 1e-2
    d = get_problem("digits_mlp").data
    assert d["X_train"].shape == (1347, 64) and d["X_test"].shape == (450, 64)
    assert d["X_train"].max() == 1.0
    m = get_problem("digits_mlp").metrics(get_problem("digits_mlp").x0())
    assert set(m) == {"test_loss", "test_accuracy"} and 0 <= m["test_accuracy"] <= 1


# -- stochastic gradients are unbiased ------------------------------------------------


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_gradient_is_unbiased(name):
    """Mean of value_and_grad's gradient over many (seed, step) pairs -> the gradient of
    ``loss``, checked along 6 directions against central differences of ``loss``."""
    p = PROBLEMS[name]
    k = 800
    x = p.x0(1)
    if name == "sparse_logistic":
        x = x + 0.5 * np.random.default_rng(0).standard_normal(p.dim)
    dirs = np.random.default_rng(1).standard_normal((6, p.dim))
    samples = np.concatenate([p.value_and_grad(np.broadcast_to(x, (k // 2, p.dim)), step=step,
                                               seeds=np.arange(k // 2))[1] for step in (0, 1)])
    proj = samples @ dirs.T                                   # (k, 6)
    h = 1e-5
    fd = (p.loss(x + h * dirs) - p.loss(x - h * dirs)) / (2 * h)
    err = np.abs(proj.mean(axis=0) - fd)
    se = proj.std(axis=0) / np.sqrt(k)
    assert np.all(err < 4 * se + 1e-7), (err, se)
    # the check has teeth: the noise is not negligible against the signal it averages away
    assert np.all(proj.std(axis=0) > 0.05 * np.abs(fd).max())


def test_noisy_quadratic_mean_gradient_per_coordinate():
    p = PROBLEMS["noisy_quadratic"]
    x = p.x0(2)
    k = 2000
    g = p.value_and_grad(np.broadcast_to(x, (k, p.dim)), step=11, seeds=np.arange(k))[1]
    z = (g.mean(axis=0) - p.h * x) / (np.sqrt(p.h) * p.sigma / np.sqrt(k))
    assert np.abs(z).max() < 5
    np.testing.assert_allclose(g.var(axis=0) / p.h, 1.0, atol=0.15)   # noise covariance = h
