"""Every threshold the verdict checks use, in one place; docs/diagnostics.md says where each comes from."""

WINDOW = 0.2  # the recent window: the last fifth of the run ...
MIN_WINDOW = 5  # ... and at least this many logged steps
MIN_JUDGED = 6  # fewer finite losses than this (two windows of 3, whose medians ignore one spike): TOO_SHORT
DIVERGE_FACTOR = 1.5  # recent loss above this multiple of the first loss: diverging
RISE_FROM_BEST = 3.0  # ... or above this multiple of its best window's median,
RISE_SIGNIFICANT = 0.05  # ... by more than this share of the first loss
GROWTH_BEFORE_OVERFLOW = 10.0  # growth before a non-finite value that makes it a divergence
RATE_COLLAPSE = 10.0  # the loss falling this many times slower than at its fastest, with a cause: stalled
STALL_IMPROVEMENT = 0.05  # ... and improving less than this between the last two windows
BOUNCE_PROGRESS = 0.5  # noisy gradients and less than this share of the way to a known optimum: bouncing
PLATEAU = 0.01  # relative improvement between the last two windows below which the loss has stopped
LITTLE_PROGRESS = 0.1  # a run that removed less than this share of its first loss has barely moved
CONSISTENT_COS = 0.5  # median cosine of successive gradients above which the gradient keeps its direction
REVERSING_COS = -0.5  # median cosine of successive updates below which the updates reverse
ROUNDING_STEPS = 16.0  # ... unless the update/param ratio is below this many machine epsilons of float32/64:
#   such steps are the rounding of a run at its fixed point, whose sign alternates (SGD + weight decay, float64)
ALTERNATING = 0.8  # share of loss differences that change sign: oscillation, when cosines are not logged
ADAGRAD_DROP = 10.0  # fall of AdaGrad's median effective lr that counts as its accumulator taking over
BETA2_STALE = 0.01  # median g^2 / v-hat below which v-hat remembers gradients >= 10x larger than today's
EPS_DOMINANT = 0.5  # share of coordinates where eps outweighs sqrt(v-hat) that makes eps the cause
CONVERGED_GAP = 1e-6  # gap to the optimum, as a share of the first gap, that counts as converged
GRAD_VANISHED = 1e-6  # gradient norm, as a share of the first, that counts as converged
HEALTHY_UPDATE_RATIO = 1e-3  # update/param ratio of a healthy run (a widely used rule of thumb)
HUGE_UPDATE_RATIO = 0.1  # ... steps a tenth of the parameters' size: nothing settles (Adam at lr 1 on a logistic
#   regression: 0.38-0.41; at lr 1e-2, healthy: 0.023)
ABOVE_FIRST_MIN = 20  # ... judged from this many values on (the noise of one value needs them)
ABOVE_FIRST_Z = 2.0  # a loss stopped above its first value by this many noises of one recent value: risen (the first
#   value is one draw, and a flat run with a low first draw must not read as a rise; verdict_signals.above_first)
RISE_Z = 3.0  # standard errors between two windows' medians that make a rise significant (verdict_noise)
RISE_MIN_SHARE = 0.05  # ... and at least this share of the best level: a noiseless wobble is no rise
TINY_UPDATE_RATIO = 3e-5  # update/param ratio (1/30 of a healthy one) below which steps are too small to move
ANNEALED = 0.1  # a last recorded lr at most this share of its peak: a schedule decayed it (settled, not too low)
DEAD_SHARE = 0.5  # share of exactly-zero gradient coordinates that makes dead units the cause
DIED_RISE = 0.1  # ... a share this much above the first step's: the units died as it trained (lead with the lr)
LOST_SHARE = 0.5  # share of updates (nonzero gradient) that left the parameter unchanged: rounded away
BIAS_INFLATION = 2.0  # without bias correction, 1/sqrt(1 - beta2^t) above this at the last step: the cause
BIAS_OFF_FINE = 0.9  # ... unless the run removed this share of its first loss and still falls: then a note (its
#   larger steps serve it: Adam at lr 1e-3, beta2 0.9999 on a digits MLP reached 0.01, its corrected twin 0.14)
WATCH_WINDOW = 20  # logged losses in the live check's recent window (its blocks are as long)
RISE_ALPHA = 0.01  # ... and its z grows with the run: the chance of a false alarm over a whole flat run, about
PLATEAU_BLOCKS = 3  # ... a rise is measured from the median of the blocks within RISE_Z se of the best, when this many
ADAGRAD_STALE = 0.1  # AdaGrad's median t g^2 / G at or below which its accumulator holds the step down
CUSUM_K = 1.0  # the live check's CUSUM: drift per value, in noise units (it reacts to shifts above 1 sigma) ...
CUSUM_H = 15.0  # ... and the sum that fires (2x the largest, 7.5, any healthy run of the corpus reached)
CUSUM_CLIP = 3.0  # ... a value adds at most this many sigma (a single spike is no sustained rise)
CUSUM_EPS = 0.01  # ... on log(loss + this share of the first loss): the noise of a loss scales with it
CUSUM_RECENT = 10  # ... and the median of the last this many values must be RISE_MIN_SHARE above the best
NOT_SLOWING = 0.9  # the fall over the last window, per step, as a share of the run's average: not slowing down
DECAY_BALANCE = 10.0  # weight decay holds a stopped run only if its pull is within this factor of the update
#   (decoupled) or the gradient (L2) it must cancel (verdict_progress.decay_can_hold)
#: While the loss stays 1.5x its first value (or a value is non-finite), Monitor.check() asks
#: diagnose() at once, and again once the rows grew by this share since (its replay,
#: verdict_watch.first_alarm, too): it costs O(rows), and asked at every step it took a
#: trial's check() from 123 us to 26 ms a call.
ALARM_REASK = 0.05
