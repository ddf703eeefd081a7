"""Sophia (Liu, Li, Hall, Liang & Ma 2023, arXiv 2305.14342), Algorithm 1, in float64 NumPy.

Written from the algorithm box: the gradient's EMA m, the Hessian diagonal's EMA h refreshed on
the steps t = 1, k + 1, 2k + 1, ..., decoupled weight decay and the clipped step
clip(m / max(gamma h, eps), rho). Two switches give Optax's variant: m bias-corrected, and the
step taken with the h of the previous step. Every hyperparameter may be a function of the step
count (t - 1), so that a test can change one between two steps.
"""

from __future__ import annotations

import numpy as np

import references as R


class SophiaRun:
    """The parameters after each step, and how many coordinates were clipped or not."""

    def __init__(self):
        self.history: list[dict[str, np.ndarray]] = []
        self.clipped = 0
        self.unclipped = 0
        self.estimates = 0


def ref_sophia(
    params,
    grad_fn,
    hess_diag_fn,
    steps,
    learning_rate,
    b1=0.965,
    b2=0.99,
    eps=1e-8,
    weight_decay=1e-4,
    weight_decay_mask=None,
    gamma=0.01,
    clip_threshold=1.0,
    update_interval=10,
    bias_correction_mu=False,
    lagged_hessian=False,
):
    """Run Sophia for ``steps`` steps from ``params`` (a dict of arrays).

    ``grad_fn(theta)`` and ``hess_diag_fn(theta)`` return dicts like ``theta``: the gradient and
    the (exact) diagonal of the Hessian. ``weight_decay_mask`` is a dict of bools (None: all).
    """
    theta = {k: np.array(v, np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    h = {k: np.zeros_like(v) for k, v in theta.items()}
    run = SophiaRun()
    for t in range(1, steps + 1):
        c = t - 1
        beta1, beta2 = R.value_at(b1, c), R.value_at(b2, c)
        k = int(R.value_at(update_interval, c))
        g = grad_fn(theta)
        m = {n: beta1 * m[n] + (1 - beta1) * g[n] for n in theta}  # line 6
        h_before = h
        if (t - 1) % k == 0:  # line 7: t mod k = 1 (every step when k = 1)
            h_hat = hess_diag_fn(theta)  # line 8, at theta_t
            h = {n: beta2 * h[n] + (1 - beta2) * h_hat[n] for n in theta}  # line 9
            run.estimates += 1
        eta, lam = R.value_at(learning_rate, c), R.value_at(weight_decay, c)
        gam, epsilon = R.value_at(gamma, c), R.value_at(eps, c)
        new = {}
        for n in theta:
            m_t = m[n] / (1 - beta1**t) if bias_correction_mu else m[n]
            h_t = h_before[n] if lagged_hessian else h[n]
            ratio = m_t / np.maximum(gam * h_t, epsilon)
            if clip_threshold is not None:
                rho = R.value_at(clip_threshold, c)
                run.clipped += int(np.sum(np.abs(ratio) >= rho))
                run.unclipped += int(np.sum(np.abs(ratio) < rho))
                ratio = np.clip(ratio, -rho, rho)
            decay = lam if weight_decay_mask is None or weight_decay_mask[n] else 0.0
            new[n] = theta[n] - eta * decay * theta[n] - eta * ratio  # lines 12-13
        theta = new
        run.history.append({n: v.copy() for n, v in theta.items()})
    return run
