"""Schedule-free SGD and AdamW (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, 2024, "The
Road Less Scheduled", arXiv 2405.15682), written from the paper's Algorithm 1 (AdamW) and its SGD
form, in float64 on dicts of NumPy arrays.

Each function runs ``steps`` steps from ``params`` with the gradient ``grad_fn(y)`` taken at the
interpolated point y_t, and returns the list of (y_{t+1}, x_{t+1}) after every step: the
parameters the user holds and the average to evaluate. ``t`` counts from 1.
"""

from __future__ import annotations

import numpy as np


def _lr(learning_rate, t):
    """A number, or a schedule of the step evaluated at t - 1 (gradtx's convention)."""
    return float(learning_rate(t - 1)) if callable(learning_rate) else float(learning_rate)


def _warmup(t, warmup_steps):
    return min(1.0, t / warmup_steps) if warmup_steps else 1.0


def _at(value, t):
    """A number, or a function of t (a value set by hand between steps)."""
    return float(value(t)) if callable(value) else float(value)


def _run(params, grad_fn, steps, b1, weight_lr_power, weight_by_max_lr, z_step):
    """The three sequences; ``z_step(t, z, g, y)`` returns (z_{t+1}, gamma_t). ``b1`` may be a
    function of t (y_t = (1 - b1(t)) z_t + b1(t) x_t), ``weight_lr_power`` one of t too."""
    z = {k: np.array(v, np.float64) for k, v in params.items()}  # z_1 = x_1
    x = {k: v.copy() for k, v in z.items()}
    weights, gamma_max, out = 0.0, 0.0, []
    for t in range(1, steps + 1):
        beta = _at(b1, t)
        y = {k: (1 - beta) * z[k] + beta * x[k] for k in z}
        g = {k: np.asarray(v, np.float64) for k, v in grad_fn(y).items()}
        z, gamma = z_step(t, z, g, y)
        gamma_max = max(gamma_max, gamma)
        w = (gamma_max if weight_by_max_lr else gamma) ** _at(weight_lr_power, t)
        weights += w
        c = w / weights if weights > 0 else 1.0
        x = {k: (1 - c) * x[k] + c * z[k] for k in z}
        beta = _at(b1, t + 1)
        out.append(({k: (1 - beta) * z[k] + beta * x[k] for k in z}, x))
    return out


def ref_schedule_free_sgd(
    grad_fn,
    params,
    steps,
    learning_rate=1.0,
    warmup_steps=None,
    b1=0.9,
    weight_decay=None,
    weight_lr_power=2.0,
    weight_by_max_lr=False,
):
    """SF-SGD: z_{t+1} = z_t - gamma_t (g_t + lambda y_t), gamma_t = gamma min(1, t / T_warmup),
    c_{t+1} = gamma_t^p / sum_{i<=t} gamma_i^p."""
    wd = weight_decay or 0.0

    def z_step(t, z, g, y):
        gamma = _lr(learning_rate, t) * _warmup(t, warmup_steps)
        return {k: z[k] - gamma * (g[k] + wd * y[k]) for k in z}, gamma

    return _run(params, grad_fn, steps, b1, weight_lr_power, weight_by_max_lr, z_step)


def ref_schedule_free_adamw(
    grad_fn,
    params,
    steps,
    learning_rate=0.0025,
    warmup_steps=None,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    weight_lr_power=2.0,
    weight_by_max_lr=False,
    bias_correction_in_denominator=False,
):
    """SF-AdamW, Algorithm 1: v_t = b2 v_{t-1} + (1 - b2) g_t^2,
    gamma_t = gamma sqrt(1 - b2^t) min(1, t / T_warmup),
    z_{t+1} = z_t - gamma_t g_t / (sqrt(v_t) + eps) - gamma_t lambda y_t.

    ``bias_correction_in_denominator``: gamma_t = gamma min(1, t / T_warmup) and
    z_{t+1} = z_t - gamma_t (g_t / (sqrt(v_t / (1 - b2^t)) + eps) + lambda y_t).
    """
    v = {k: np.zeros(np.shape(p)) for k, p in params.items()}

    def z_step(t, z, g, y):
        for k in v:
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
        gamma = _lr(learning_rate, t) * _warmup(t, warmup_steps)
        if bias_correction_in_denominator:
            root = {k: np.sqrt(v[k] / (1 - b2**t)) for k in v}
        else:
            gamma *= np.sqrt(1 - b2**t)
            root = {k: np.sqrt(v[k]) for k in v}
        return {k: z[k] - gamma * g[k] / (root[k] + eps) - gamma * weight_decay * y[k] for k in z}, gamma

    return _run(params, grad_fn, steps, b1, weight_lr_power, weight_by_max_lr, z_step)
