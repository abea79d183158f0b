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
