"""COCOB-Backprop (Orabona & Tommasi, 2017, arXiv 1705.07795, Algorithm 2), in float64 NumPy.

Written from the algorithm box, coordinate by coordinate, with the paper's convention that the
bettor receives the *negative* gradient :math:`\\tilde g_t = -\\nabla f(w_t)`:

    L_t      = max(L_{t-1}, |g~_t|)                       (largest magnitude seen)
    G_t      = G_{t-1} + |g~_t|                           (sum of magnitudes)
    Reward_t = max(Reward_{t-1} + (w_t - w_1) g~_t, 0)    (the bettor's winnings, never below 0)
    theta_t  = theta_{t-1} + g~_t                         (sum of negative gradients)
    w_{t+1}  = w_1 + theta_t / (L_t max(G_t + L_t, alpha L_t)) (L_t + Reward_t)

The paper starts from L_0 = 0, which makes the bet 0/0 on a coordinate whose gradients have
all been 0; here L_0 = eps (Optax's reading of its ``eps``), which changes nothing once a
gradient larger than eps has been seen.
"""

from __future__ import annotations

import numpy as np


def _value(v, count):
    return float(v(count)) if callable(v) else float(v)


def ref_cocob(
    params,
    grads,
    steps,
    learning_rate=1.0,
    alpha=100.0,
    eps=1e-8,
    weight_decay=0.0,
    mask=None,
    scale_gradients=False,
):
    """Run ``steps`` steps of COCOB-Backprop from ``params`` (a dict of arrays).

    ``grads`` is a list of gradient dicts (one per step) or a function of the parameters'
    dict. Weight decay :math:`\\lambda w` is added to the gradient (on the leaves ``mask``
    selects, a dict of bools); ``learning_rate`` :math:`c` (a number or a function of the step
    count, from 0, as may be ``alpha`` and ``weight_decay``) multiplies the step :math:`w_{t+1} - w_t`, or, with ``scale_gradients``, the
    gradient before the bettor sees it. Returns one dict per step: ``params`` (after the step)
    and the state ``L``, ``G``, ``reward``, ``theta``.
    """
    w = {k: np.asarray(v, np.float64).copy() for k, v in params.items()}
    w1 = {k: v.copy() for k, v in w.items()}
    L = {k: np.full_like(v, eps) for k, v in w.items()}
    G = {k: np.zeros_like(v) for k, v in w.items()}
    reward = {k: np.zeros_like(v) for k, v in w.items()}
    theta = {k: np.zeros_like(v) for k, v in w.items()}
    history = []
    for t in range(steps):
        g_t = grads(w) if callable(grads) else grads[t]
        lr, wd, a = _value(learning_rate, t), _value(weight_decay, t), _value(alpha, t)
        for k in w:
            g = np.asarray(g_t[k], np.float64)
            if mask is None or mask[k]:
                g = g + wd * w[k]
            if scale_gradients:
                g = lr * g
            neg = -g  # the paper's g_t is the negative gradient
            L[k] = np.maximum(L[k], np.abs(neg))
            G[k] = G[k] + np.abs(neg)
            reward[k] = np.maximum(reward[k] + (w[k] - w1[k]) * neg, 0.0)
            theta[k] = theta[k] + neg
            w_next = w1[k] + theta[k] / (L[k] * np.maximum(G[k] + L[k], a * L[k])) * (L[k] + reward[k])
            step = w_next - w[k]
            w[k] = w[k] + (step if scale_gradients else lr * step)
        history.append(
            dict(
                params={k: v.copy() for k, v in w.items()},
                L={k: v.copy() for k, v in L.items()},
                G={k: v.copy() for k, v in G.items()},
                reward={k: v.copy() for k, v in reward.items()},
                theta={k: v.copy() for k, v in theta.items()},
            )
        )
    return history
