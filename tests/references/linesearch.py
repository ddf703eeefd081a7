"""The backtracking (Armijo) line search of Nocedal & Wright, Algorithm 3.1, on Rosenbrock's function."""

import numpy as np


def _np_rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def _np_rosenbrock_grad(x):
    return np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])


def armijo_reference(f, x, g, d, eta_prev, *, max_steps, c, dec, inc, max_lr, atol, rtol):
    """The backtracking loop of Nocedal & Wright Alg. 3.1, as documented by gradtx, in float64."""
    f0, slope = f(x), g @ d
    eta = min(eta_prev * inc, max_lr)
    for i in range(1, max_steps + 1):
        if i > 1:
            eta *= dec
        value = f(x + eta * d)
        if value <= f0 + atol + rtol * abs(f0) + c * eta * slope:
            break
    return eta, value, i
