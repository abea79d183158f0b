#!/usr/bin/env bash
# The lesson's worked examples, computed step by step by `adaopt trace`.
set -euo pipefail

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Example 1: AdaGrad on f(x) = 10x^2 from x0 = 5, lr 0.5, eps 0 (lesson: x1 = 4.5, x2 = 4.165, x3 = 3.902; lr_eff 0.0032)"
adaopt trace adagrad --f "10*x**2" --x0 5 --lr 0.5 --eps 0 --steps 3 --conventions lesson

say "Example 2: AdaGrad vs RMSprop on f(x) = x^2 from x0 = 10, lr 0.1, 1000 steps"
echo "AdaGrad's effective learning rate dies (exact: 2.46e-4 at step 1000; the lesson estimates 1.6e-4):"
adaopt trace adagrad --f "x**2" --x0 10 --lr 0.1 --steps 1000 --rows 6 --conventions lesson
echo
echo "RMSprop (rho 0.9) keeps a healthy step and reaches |x| <= 0.05:"
adaopt trace rmsprop --f "x**2" --x0 10 --lr 0.1 --rho 0.9 --steps 1000 --rows 6 --conventions lesson

say "Example 3: Adam's first step on f(x) = x^2 from x0 = 1, beta1 0.9 (lesson: m1 = 0.2, m-hat1 = 2)"
echo "without bias correction: m = 0.2 is 10x too small, as the lesson says, but v = 0.004 is"
echo "1000x too small, so the first step is lr*0.2/sqrt(0.004) = 3.16 lr: too LARGE, not a crawl:"
adaopt trace adam --f "x**2" --x0 1 --lr 0.1 --beta1 0.9 --steps 3 --no-bias-correction
echo
echo "with bias correction (m_hat = 2: the first step has size lr):"
adaopt trace adam --f "x**2" --x0 1 --lr 0.1 --beta1 0.9 --steps 3

say "Practice 3: AdaGrad with gradients of size 1, lr 0.1 (lesson: lr_eff 0.01 at k = 100)"
adaopt trace adagrad --f "abs(x)" --x0 1000 --lr 0.1 --steps 100 --rows 4 --conventions lesson
