"""Sharpness-aware minimization (Foret, Kleiner, Mobahi & Neyshabur 2021, arXiv 2010.01412),
Algorithm 1 with p = 2, in float64 NumPy.

Each step: g = grad L(w); eps = rho g / ||g||_2 (the norm over all leaves together); the
gradient at w + eps; w <- w - eta * that gradient. ``ascent_steps`` > 1 repeats the normalised
ascent from the point reached (an extension: the paper takes one step).
"""

from __future__ import annotations

import numpy as np


def _global_norm(tree):
    return float(np.sqrt(sum(np.sum(x**2) for x in tree.values())))


def ref_sam(params, grad_fn, steps, rho, learning_rate, ascent_steps=1):
    """Run SAM with plain gradient descent for ``steps`` outer steps from ``params`` (a dict of
    arrays); ``grad_fn(w)`` is the gradient at ``w``. Returns ``(history, adversarial)``: the
    parameters after each outer step, and the list of adversarial points of each step."""
    w = {k: np.array(v, np.float64) for k, v in params.items()}
    history, adversarial = [], []
    for _ in range(steps):
        g = grad_fn(w)
        w_adv, points = w, []
        for _ in range(ascent_steps):
            norm = _global_norm(g)
            scale = rho / norm if norm > 0 else 0.0
            w_adv = {k: w_adv[k] + scale * g[k] for k in w}  # the worst point of the rho-ball, to first order
            points.append(w_adv)
            g = grad_fn(w_adv)
        w = {k: w[k] - learning_rate * g[k] for k in w}
        history.append(w)
        adversarial.append(points)
    return history, adversarial
