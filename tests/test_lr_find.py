"""The learning-rate range test on lab problems and on a torch model."""

import numpy as np
import pytest

import adaopt
from adaopt.diagnostics import lr_find


def test_range_test_on_a_problem_stops_at_4x_the_best_smoothed_loss():
    r = lr_find("digits_mlp", "sgd", steps=200)
    assert r.stopped_early
    assert r.smoothed[-1] > 4 * np.min(r.smoothed[:-1])
    assert np.all(r.smoothed[:-1] <= 4 * np.minimum.accumulate(r.smoothed[:-1]) + 1e-12)
    assert r.lrs[0] <= r.suggestion <= r.min_loss_lr  # the steepest fall comes before the minimum
    # the lrs grow exponentially from start towards end
    assert np.allclose(np.diff(np.log(r.lrs)), np.log(10 / 1e-7) / 199)


def test_the_suggestion_trains_well():
    """A short run at the suggested lr beats one at 1/100 of it."""
    from adaopt.lab.sweep import run_sweep

    r = lr_find("quadratic", "adam")
    good = run_sweep("quadratic", "adam", [r.suggestion], (0,), 200).final_loss[0]
    slow = run_sweep("quadratic", "adam", [r.suggestion / 100], (0,), 200).final_loss[0]
    assert good < slow


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="start"):
        lr_find("quadratic", start=1.0, end=0.1)
    with pytest.raises(ValueError, match="steps"):
        lr_find("quadratic", steps=1)
    with pytest.raises(ValueError, match="smooth"):
        lr_find("quadratic", smooth=1.0)
    with pytest.raises(ValueError, match="lion"):
        lr_find("quadratic", "lion")
    with pytest.raises(ValueError, match="nope"):
        lr_find("nope")


def test_plot_marks_the_suggestion():
    pytest.importorskip("matplotlib")
    r = lr_find("rosenbrock", "adam")
    ax = r.plot()
    assert ax.get_xscale() == "log"
    assert any(abs(line.get_xdata()[0] - r.suggestion) < 1e-12 for line in ax.get_lines()
               if len(line.get_xdata()) == 2)
    assert "suggested lr" in str(r)


def test_range_test_on_a_torch_model_restores_its_weights():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(256, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    r = adaopt.lr_find(model, "adam", loss_fn=torch.nn.functional.mse_loss, data=batches, steps=120)
    assert r.stopped_early and 1e-5 < r.suggestion < 10
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # a torch.optim class works too
    r2 = adaopt.lr_find(model, torch.optim.SGD, loss_fn=torch.nn.functional.mse_loss, data=batches, steps=60)
    assert r2.optimizer == "SGD" and len(r2.lrs) >= 2
    with pytest.raises(ValueError, match="loss_fn"):
        adaopt.lr_find(model, "adam")
    # an empty DataLoader: a message, not a bare StopIteration, and the model as it was
    with pytest.raises(ValueError, match="data= gave no batches"):
        adaopt.lr_find(model, "adam", loss_fn=torch.nn.functional.mse_loss, data=[])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_summary_offers_two_choices_without_contradicting_itself():
    from adaopt.diagnostics.lr_find import LRFindResult

    lrs = np.logspace(-4, 0, 50)
    found = LRFindResult(lrs, 1 / lrs, 1 / lrs, suggestion=0.5, min_loss_lr=float(lrs[-1]),
                         stopped_early=False, optimizer="adam")
    text = str(found)
    assert "suggested lr: 0.5" in text and "a tenth of that, 0.1," in text
    assert "upper bound" not in text  # the old line called lr/10 safe while suggesting more
    assert "still falling at the largest lr tried" in text
    found.stopped_early = True
    assert "still falling" not in str(found)


def _low_first_batch(torch):
    """A regression whose first batch the initial model already fits (its targets are the model's
    own predictions): the first loss is ~0, every later batch's is large."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x = torch.randn(13 * 32, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    with torch.no_grad():
        y[:32] = model(x[:32])
    return model, [(x[i:i + 32], y[i:i + 32]) for i in range(0, len(x), 32)]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_low_first_batch_is_never_the_minimum_or_the_suggestion(optimizer):
    """A low first batch had made the start of the range (1e-7) the minimum and the suggestion;
    the first tenth of the sweep is now neither, and the suggestion trains."""
    torch = pytest.importorskip("torch")
    import adaopt.torch as at

    model, batches = _low_first_batch(torch)
    r = adaopt.lr_find(model, optimizer, loss_fn=torch.nn.functional.mse_loss, data=batches)
    assert r.losses[0] < 0.01 * np.median(r.losses[1:20])  # the premise: a first batch far below the rest
    assert r.min_loss_lr >= r.lrs[10] and r.suggestion >= r.lrs[5], str(r)
    assert r.fall > 0.05 and "no clear descent" not in str(r)
    losses = {}
    for lr in (r.suggestion, float(r.lrs[0])):
        m, _ = _low_first_batch(torch)
        opt = (at.SGD if optimizer == "sgd" else at.Adam)(m.parameters(), lr=lr)
        for _ in range(5):
            for xb, yb in batches[1:]:
                opt.zero_grad()
                torch.nn.functional.mse_loss(m(xb), yb).backward()
                opt.step()
        with torch.no_grad():
            losses[lr] = float(sum(torch.nn.functional.mse_loss(m(xb), yb) for xb, yb in batches[1:]))
    assert losses[r.suggestion] < 0.5 * losses[float(r.lrs[0])], losses


def test_a_flat_sweep_says_its_descent_is_not_clear():
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(4, 1)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 4, generator=gen), torch.randn(8, 1, generator=gen)) for _ in range(10)]

    def flat(out, target):  # a loss the parameters barely touch
        return 1.0 + 1e-9 * out.sum() + 0.01 * target.mean()

    r = adaopt.lr_find(model, "adam", loss_fn=flat, data=batches, steps=60)
    assert abs(r.fall) < 0.05 and "no clear descent" in str(r), str(r)


def test_plot_takes_a_path_too(tmp_path):
    pytest.importorskip("matplotlib")
    r = lr_find("rosenbrock", "adam", steps=40)
    ax = r.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 1000 and ax.get_xscale() == "log"
    r.plot(str(tmp_path / "lr2.png"))
    assert (tmp_path / "lr2.png").exists()
    with pytest.raises(TypeError, match="a matplotlib Axes, a file path"):
        r.plot(3)
