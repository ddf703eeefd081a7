"""DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", Algorithm 1).

Per example i: g_i clipped to g_i / max(1, |g_i| / C), the norm over all leaves of that example;
the clipped gradients summed, N(0, sigma^2 C^2) noise added to every coordinate, the sum divided
by the batch size L; then a gradient step (with heavy-ball or Nesterov momentum if asked).

The references work on dicts of float64 arrays; per-example gradients carry the batch on axis 0.
"""

import numpy as np


def clipped_mean(per_example, l2_norm_clip):
    """The noiseless aggregate of Algorithm 1: the mean of the clipped per-example gradients."""
    keys = sorted(per_example)
    batch = per_example[keys[0]].shape[0]
    total = {k: np.zeros(per_example[k].shape[1:], per_example[k].dtype) for k in keys}
    for i in range(batch):
        norm = np.sqrt(sum(np.sum(np.abs(per_example[k][i]) ** 2) for k in keys))
        factor = 1.0 / max(1.0, norm / l2_norm_clip)
        for k in keys:
            total[k] = total[k] + per_example[k][i] * factor
    return {k: total[k] / batch for k in keys}


def noise_std(l2_norm_clip, noise_multiplier, batch):
    """The standard deviation of the noise in each coordinate of the aggregate: sigma C / L."""
    return noise_multiplier * l2_norm_clip / batch


def ref_dpsgd(params, per_example_grads, learning_rate, l2_norm_clip, momentum=None, nesterov=False):
    """T steps of noiseless DP-SGD from ``params`` on the given per-example gradients (one dict per
    step); returns the parameters after every step."""
    params = {k: np.asarray(v, np.complex128 if np.iscomplexobj(v) else np.float64) for k, v in params.items()}
    buffer = {k: np.zeros_like(v) for k, v in params.items()}
    out = []
    for grads in per_example_grads:
        g = clipped_mean(grads, l2_norm_clip)
        for k in params:
            if momentum is None:
                step = g[k]
            else:
                buffer[k] = g[k] + momentum * buffer[k]
                step = g[k] + momentum * buffer[k] if nesterov else buffer[k]
            params[k] = params[k] - learning_rate * step
        out.append({k: v.copy() for k, v in params.items()})
    return out
