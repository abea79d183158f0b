"""The labelled cases. Each label (verdicts, cause codes) was written from how the run was made,
before its verdict was looked at; a failure's twin is the same run with the advice applied.

Failure classes (``kind``): lr_high_fast (a blow-up in a few steps), lr_high_late (a blow-up
after a good start), lr_high_creep (a slow climb from the best), lr_high_collapse (a LM held
at the unigram entropy), lr_low (1000x too small), dead_units (ReLUs dead from step 1),
beta2 (v-hat remembers gradients of another scale), adagrad (its accumulator), bias_off (Adam
without bias correction, beta2 = 0.9999), round_away (bf16 updates below half an ulp), nan,
oscillation; and healthy runs of every kind.
"""

from __future__ import annotations

import torch

from . import runs_numpy as npr
from .case import Result, case
from .runs_torch import Task, dead_relus, jump, nan_batch, ramp, restarts, runner, train, warmup
from adaopt.diagnostics import History

HIGH = "lr_too_high"
ALARM = frozenset({"DIVERGING", "NONFINITE"})
NONFINITE_CODES = {HIGH, "nonfinite_gradient", "nonfinite_update", "nonfinite_loss"}
STUCK = {"STALLED", "SLOW"}

digits, cnn, cancer, wine = Task("digits", "mlp"), Task("digits", "cnn"), Task("breast_cancer", "mlp"), Task("wine", "mlp")
diabetes = Task("diabetes", "mlp")
tf, post_ln, gru = Task("text", "transformer", batch=16), Task("text", "post_ln", batch=16), Task("text", "gru", batch=16)
T = runner


def per_epoch(task, opt, burn=200, epochs=20, per=14, **kw):
    """A run logged once an epoch (the mean minibatch loss of ``per`` steps), after ``burn`` steps:
    the ~20-row log of a per-epoch training script."""
    def run(seed):
        r = train(task, opt, seed, steps=burn + epochs * per, **kw)
        loss = r.history["loss"][burn:].reshape(epochs, per).mean(axis=1)
        return Result(History({"step": list(range(1, epochs + 1)), "loss": list(loss)}, r.history.meta), None, r.final)
    return run


HEALTHY_CASES = [
    case("digits_mlp_adam", "healthy", T(digits, "adam", lr=1e-3), None, fast=True),
    case("digits_mlp_at_adamw", "healthy", T(digits, "at.adamw", lr=1e-3), None),
    case("digits_cnn_adam", "healthy", T(cnn, "adam", lr=1e-3), None),
    case("digits_cnn_sgd_momentum", "healthy", T(cnn, "sgd", lr=0.05, momentum=0.9), None),
    case("digits_cnn_bf16_kahan", "healthy", T(cnn, "at.adam", lr=1e-3, dtype=torch.bfloat16, kahan=True), None),
    case("cancer_mlp_adam", "healthy", T(cancer, "adam", lr=1e-3), None),
    case("cancer_mlp_at_rmsprop", "healthy", T(cancer, "at.rmsprop", lr=1e-3), None),
    case("cancer_mlp_adagrad", "healthy", T(cancer, "adagrad", lr=1e-2), None),
    case("wine_mlp_adam", "healthy", T(wine, "adam", lr=3e-3), None, fast=True),
    case("wine_mlp_sgd_momentum", "healthy", T(wine, "sgd", lr=0.05, momentum=0.9), None),
    case("diabetes_mlp_adam", "healthy", T(diabetes, "adam", lr=3e-3), None, fast=True),
    case("diabetes_mlp_at_adam", "healthy", T(diabetes, "at.adam", lr=1e-3), None),
    case("diabetes_per_epoch_log", "healthy", per_epoch(diabetes, "adam", lr=1e-2), None, fast=True),
    case("digits_per_epoch_log", "healthy", per_epoch(digits, "adam", burn=400, per=56, lr=1e-3), None),
    case("tf_adamw_warmup", "healthy", T(tf, "adamw", lr=3e-3, schedule=warmup(30)), None),
    case("tf_at_adamw", "healthy", T(tf, "at.adamw", lr=1e-3), None),
    case("gru_adam", "healthy", T(gru, "adam", lr=3e-3), None),
    case("gru_at_rmsprop", "healthy", T(gru, "at.rmsprop", lr=2e-3), None),
    # the lr raised at once to one that trains (a constant warmup), and warm restarts (SGDR)
    case("digits_mlp_adam_constant_warmup", "healthy", T(digits, "adam", lr=1e-4, schedule=jump(100, 10)), None),
    case("digits_cnn_sgd_constant_warmup", "healthy", T(cnn, "sgd", lr=5e-3, momentum=0.9, schedule=jump(100, 10)),
         None),
    case("gru_adam_constant_warmup", "healthy", T(gru, "adam", lr=3e-4, schedule=jump(100, 10)), None),
    case("digits_mlp_sgd_restarts", "healthy", T(digits, "sgd", lr=0.05, momentum=0.9, steps=400,
                                                  schedule=restarts(100)), None),
    case("tf_adamw_restarts", "healthy", T(tf, "adamw", lr=3e-3, steps=400, schedule=restarts(100, 0.01)), None),
    case("np_adam_quadratic", "healthy", npr.lab("quadratic", "adam", floor=True, lr=0.1), None, fast=True),
    case("np_adam_digits", "healthy", npr.lab("digits_mlp", "adam", lr=0.01, steps=1000), None),
    case("np_momentum_quadratic", "healthy", npr.lab("quadratic", "sgd", floor=True, lr=0.02, momentum=0.9), None,
         fast=True),
    case("np_adam_rosenbrock", "healthy", npr.lab("rosenbrock", "adam", floor=True, lr=0.01, steps=3000), None),
    case("np_sgd_saddle", "healthy", npr.lab("saddle", "sgd", floor=True, lr=0.05), None, fast=True),
    case("np_adam_beale", "healthy", npr.lab("beale", "adam", floor=True, lr=0.01), None, fast=True),
    case("np_adam_sparse_logistic", "healthy", npr.lab("sparse_logistic", "adam", lr=0.01), None),
    case("np_adam_noisy_quadratic", "healthy", npr.lab("noisy_quadratic", "adam", floor=True, lr=0.01), None,
         fast=True),
    case("np_adam_beta2_0.99_after_drop", "healthy", npr.scale_drop((0.9, 0.99)), None, fast=True),
]

FAILURE_CASES = [
    # a blow-up within a few steps
    case("np_sgd_quadratic_lr0.05", "lr_high_fast", npr.lab("quadratic", "sgd", lr=0.05, steps=100, onset=0), ALARM,
         HIGH, alarm=True, fast=True, twin=npr.lab("quadratic", "sgd", lr=0.005, steps=100)),
    case("np_sgd_quadratic_lr0.5_overflow", "lr_high_fast", npr.lab("quadratic", "sgd", lr=0.5, steps=500, onset=0),
         ALARM, NONFINITE_CODES, alarm=True, fast=True),
    case("np_adam_digits_lr10", "lr_high_fast", npr.lab("digits_mlp", "adam", lr=10.0, steps=500, onset=0), ALARM,
         HIGH, alarm=True, twin=npr.lab("digits_mlp", "adam", lr=1.0, steps=500)),
    case("digits_mlp_adam_lr3", "lr_high_fast", T(digits, "adam", lr=3.0, onset=0), ALARM, NONFINITE_CODES,
         alarm=True, twin=T(digits, "adam", lr=0.3)),
    case("tf_adam_lr1", "lr_high_fast", T(tf, "adam", lr=1.0, onset=0), ALARM, NONFINITE_CODES, alarm=True,
         twin=T(tf, "adam", lr=0.1)),
    # a blow-up after a good start (an lr jump: a scheduler bug)
    case("digits_mlp_sgd_jump40_at200", "lr_high_late", T(digits, "sgd", lr=0.05, momentum=0.9,
         schedule=jump(200, 40), onset=200), ALARM, NONFINITE_CODES, alarm=True,
         twin=T(digits, "sgd", lr=0.05, momentum=0.9, schedule=jump(200, 4))),
    case("digits_cnn_adam_jump30_at300", "lr_high_late", T(cnn, "adam", lr=3e-3, steps=450,
         schedule=jump(300, 30), onset=300), ALARM, HIGH, alarm=True, twin=T(cnn, "adam", lr=3e-3, steps=450)),
    case("cancer_mlp_adam_jump100_at200", "lr_high_late", T(cancer, "adam", lr=3e-3, steps=350,
         schedule=jump(200, 100), onset=200), ALARM, HIGH, alarm=True, twin=T(cancer, "adam", lr=3e-3, steps=350)),
    case("gru_adam_jump20_at200", "lr_high_late", T(gru, "adam", lr=3e-3, steps=300, schedule=jump(200, 20),
         onset=200), ALARM, HIGH, alarm=True, twin=T(gru, "adam", lr=3e-3, steps=300)),
    case("diabetes_sgd_jump100_at150", "lr_high_late", T(diabetes, "sgd", lr=0.01, steps=300,
         schedule=jump(150, 100), onset=150), ALARM, NONFINITE_CODES, alarm=True, fast=True,
         twin=T(diabetes, "sgd", lr=0.01, steps=300)),
    # a slow climb from the best
    case("gru_adam_lr0.05_creep", "lr_high_creep", T(gru, "adam", lr=5e-2), ALARM, HIGH, alarm=True,
         twin=T(gru, "adam", lr=3e-3)),
    case("digits_mlp_adam_ramp", "lr_high_creep", T(digits, "adam", lr=1e-3, steps=400, schedule=ramp(400, 300)),
         ALARM, HIGH, alarm=True, twin=T(digits, "adam", lr=1e-3, steps=400)),
    case("cancer_mlp_sgd_ramp", "lr_high_creep", T(cancer, "sgd", lr=1e-2, steps=400, schedule=ramp(400, 500)),
         ALARM, HIGH, alarm=True, twin=T(cancer, "sgd", lr=1e-2, steps=400)),
    # a language model held at the unigram entropy
    case("tf_adam_lr0.1_collapse", "lr_high_collapse", T(tf, "adam", lr=0.1), {"DIVERGING", "STALLED"}, HIGH,
         twin=T(tf, "adam", lr=3e-3, schedule=warmup(30))),
    case("post_ln_adam_lr0.1_collapse", "lr_high_collapse", T(post_ln, "adam", lr=0.1), {"DIVERGING", "STALLED"},
         HIGH, twin=T(post_ln, "adam", lr=3e-3, schedule=warmup(30))),
    case("gru_adam_lr0.3_collapse", "lr_high_collapse", T(gru, "adam", lr=0.3), {"DIVERGING", "STALLED"}, HIGH,
         twin=T(gru, "adam", lr=3e-3)),
    # lr far too small
    case("digits_cnn_adam_lr1e-6", "lr_low", T(cnn, "adam", lr=1e-6), STUCK, "lr_too_low",
         twin=T(cnn, "adam", lr=1e-3)),
    case("digits_mlp_sgd_lr1e-5", "lr_low", T(digits, "sgd", lr=1e-5), STUCK, "lr_too_low", better=0.97,
         twin=T(digits, "sgd", lr=1e-2)),
    case("wine_mlp_at_adam_lr1e-6", "lr_low", T(wine, "at.adam", lr=1e-6), STUCK, "lr_too_low", fast=True,
         twin=T(wine, "at.adam", lr=1e-3)),
    case("gru_adam_lr1e-6", "lr_low", T(gru, "adam", lr=1e-6), STUCK, "lr_too_low", twin=T(gru, "adam", lr=1e-3)),
    case("np_sgd_quadratic_lr1.5e-6", "lr_low", npr.lab("quadratic", "sgd", lr=1.5e-6), STUCK, "lr_too_low",
         fast=True, twin=npr.lab("quadratic", "sgd", lr=1.5e-3)),
    case("np_adam_quadratic_lr1e-5", "lr_low", npr.lab("quadratic", "adam", lr=1e-5), STUCK, "lr_too_low",
         fast=True, twin=npr.lab("quadratic", "adam", lr=1e-2)),
    # dead ReLUs from step 1: the loss sits at chance
    case("digits_mlp_dead_relu", "dead_units", T(digits, "adam", lr=1e-3, init=dead_relus), STUCK, "dead_units",
         fast=True, twin=T(digits, "adam", lr=1e-3)),
    case("digits_cnn_dead_relu", "dead_units", T(cnn, "adam", lr=1e-3, init=dead_relus), STUCK, "dead_units",
         twin=T(cnn, "adam", lr=1e-3)),
    case("cancer_mlp_dead_relu", "dead_units", T(cancer, "sgd", lr=1e-2, momentum=0.9, init=dead_relus), STUCK,
         "dead_units", twin=T(cancer, "sgd", lr=1e-2, momentum=0.9)),
    # v-hat remembers gradients of another scale
    case("np_adam_beta2_0.9999_after_drop", "beta2", npr.scale_drop((0.9, 0.9999)), STUCK, "beta2_memory",
         fast=True, twin=npr.scale_drop((0.9, 0.99))),
    case("np_adam_beta2_0.99999_after_drop", "beta2", npr.scale_drop((0.9, 0.99999), lr=3e-3), STUCK,
         "beta2_memory", twin=npr.scale_drop((0.9, 0.99), lr=3e-3)),
    # AdaGrad's accumulator
    case("np_adagrad_breast_cancer", "adagrad", npr.lab("breast_cancer", "adagrad", lr=0.001, steps=2000), STUCK,
         "adagrad_accumulator", twin=npr.lab("breast_cancer", "adam", lr=0.001, steps=2000)),
    case("np_adagrad_rosenbrock", "adagrad", npr.lab("rosenbrock", "adagrad", floor=True, lr=0.05, steps=3000),
         STUCK, "adagrad_accumulator",
         twin=npr.lab("rosenbrock", "adam", floor=True, lr=0.05, steps=3000)),
    case("np_adagrad_beale", "adagrad", npr.lab("beale", "adagrad", floor=True, lr=0.05), STUCK,
         "adagrad_accumulator", twin=npr.lab("beale", "adam", floor=True, lr=0.05)),
    case("np_adagrad_quadratic", "adagrad", npr.lab("quadratic", "adagrad", floor=True, lr=0.05), STUCK,
         "adagrad_accumulator", fast=True, twin=npr.lab("quadratic", "adam", floor=True, lr=0.05)),
    # Adam without bias correction, beta2 = 0.9999 (the lesson's pitfall 3)
    case("digits_mlp_adam_nobc", "bias_off", T(digits, "at.adam", lr=1e-2, betas=(0.9, 0.9999),
         bias_correction=False), STUCK, "bias_correction_off", fast=True,
         twin=T(digits, "at.adam", lr=1e-2, betas=(0.9, 0.9999))),
    case("digits_cnn_adam_nobc", "bias_off", T(cnn, "at.adam", lr=1e-2, betas=(0.9, 0.9999), bias_correction=False),
         STUCK, "bias_correction_off", twin=T(cnn, "at.adam", lr=1e-2, betas=(0.9, 0.9999))),
    case("gru_adam_nobc", "bias_off", T(gru, "at.adam", lr=1e-2, betas=(0.9, 0.9999), bias_correction=False),
         STUCK, "bias_correction_off", twin=T(gru, "at.adam", lr=1e-2, betas=(0.9, 0.9999))),
    # bf16 parameters whose updates round away
    case("digits_mlp_bf16_round_away", "round_away", T(digits, "at.adam", lr=1e-4, dtype=torch.bfloat16), STUCK,
         "updates_round_away", fast=True, better=0.97,
         twin=T(digits, "at.adam", lr=1e-4, dtype=torch.bfloat16, kahan=True)),
    case("digits_cnn_bf16_round_away", "round_away", T(cnn, "at.adam", lr=1e-4, dtype=torch.bfloat16), STUCK,
         "updates_round_away", better=0.97, twin=T(cnn, "at.adam", lr=1e-4, dtype=torch.bfloat16, kahan=True)),
    case("diabetes_sgd_bf16_round_away", "round_away", T(diabetes, "at.sgd", lr=1e-3, dtype=torch.bfloat16), STUCK,
         "updates_round_away", better=0.97, twin=T(diabetes, "at.sgd", lr=1e-3, dtype=torch.bfloat16, kahan=True)),
    # a NaN
    case("np_adam_quadratic_nan_at_151", "nan", npr.lab("quadratic", "adam", floor=True, lr=0.1,
         grad_hook=npr.nan_at(150), onset=150), "NONFINITE", "nonfinite_gradient", alarm=True, fast=True),
    case("wine_mlp_nan_batch_at_100", "nan", T(wine, "adam", lr=3e-3, batch_hook=nan_batch(100), onset=100),
         "NONFINITE", {"nonfinite_gradient", "nonfinite_loss"}, alarm=True, fast=True),
    case("tf_nan_free_digits_cnn_nan_batch", "nan", T(cnn, "adam", lr=1e-3, batch_hook=nan_batch(150), onset=150),
         "NONFINITE", {"nonfinite_gradient", "nonfinite_loss"}, alarm=True),
    # steps too large to settle
    case("np_rmsprop_lesson_example2", "oscillation", npr.lesson_rmsprop(), "OSCILLATING", "oscillation", fast=True),
    case("np_adam_noisy_quadratic_lr0.5", "oscillation", npr.lab("noisy_quadratic", "adam", floor=True, lr=0.5,
         steps=500), "OSCILLATING", "oscillation", fast=True,
         twin=npr.lab("noisy_quadratic", "adam", floor=True, lr=0.05, steps=500)),
]

CASES = HEALTHY_CASES + FAILURE_CASES
