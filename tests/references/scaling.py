"""Scaling by a constant, a schedule or a learning rate, and the rule of ``reduce_on_plateau``."""

from references import Ref, value_at


class Scale(Ref):
    def __init__(self, step_size):
        self.step_size = step_size

    def update(self, grads, params):
        self.t += 1
        return [self.step_size * g for g in grads]


class ScaleBySchedule(Ref):
    """u * f(t - 1): the schedule is called with 0 on the first update."""

    def __init__(self, step_size_fn):
        self.fn = step_size_fn

    def update(self, grads, params):
        self.t += 1
        s = value_at(self.fn, self.t - 1)
        return [s * g for g in grads]


def ScaleByLearningRate(learning_rate, flip_sign=True):
    sign = -1.0 if flip_sign else 1.0
    return ScaleBySchedule(lambda count: sign * value_at(learning_rate, count))


def reference_scales(losses, factor, patience, rtol, atol, cooldown, accumulation_size, min_scale):
    """torch.optim.ReduceLROnPlateau's rule (mode='min', threshold_mode='rel' plus atol), over
    windows, with Optax's count: a reduction after ``patience`` bad windows (at least one), where
    torch waits for ``patience + 1``."""
    scale, best, bad, cool, window, scales = 1.0, float("inf"), 0, 0, [], []
    for loss in losses:
        window.append(loss)
        if len(window) == accumulation_size:
            mean = sum(window) / accumulation_size
            window = []
            if mean < (1 - rtol) * best - atol:
                best, bad = mean, 0
            else:
                bad += 1
            if cool > 0:
                cool -= 1
                bad = 0
            if bad >= max(patience, 1):
                scale, cool, bad = max(scale * factor, min_scale), cooldown, 0
        scales.append(scale)
    return scales
