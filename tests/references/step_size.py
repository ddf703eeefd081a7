"""Step sizes from the run itself: Polyak's (Polyak 1987 / Loizou et al. 2021) and DoG (Ivgi,
Hinder & Carmon 2023)."""

import numpy as np

import references as R
from references.block_scaling import norm
from references.layerwise import flat_mask


def ref_loss(params):
    return 1.0 + 0.5 * sum(float(np.sum(p**2)) for p in params)


class Polyak(R.Ref):
    """gamma = min((f - f*) / (|g|^2 + eps), gamma_max); SPS+ clips f - f* at 0."""

    def __init__(self, f_min=0.0, max_learning_rate=1.0, eps=0.0, variant="sps", scaling=None):
        self.f_min, self.cap, self.eps, self.variant, self.scaling = f_min, max_learning_rate, eps, variant, scaling
        self.capped = self.uncapped = 0

    def update(self, grads, params):
        gap = ref_loss(params) - self.f_min
        if self.variant == "sps+":
            gap = max(gap, 0.0)
        denominator = sum(np.sum(g**2) for g in grads) + self.eps
        gamma = min(gap / denominator, self.cap) if denominator > 0 else self.cap
        self.capped += gamma == self.cap
        self.uncapped += gamma != self.cap
        scale = 1.0 if self.scaling is None else -R.value_at(self.scaling, self.t)
        self.t += 1
        return [scale * gamma * g for g in grads]


def ref_polyak_sgd(max_learning_rate=1.0, scaling=1.0, f_min=0.0, eps=0.0, variant="sps"):
    return Polyak(f_min, max_learning_rate, eps, variant, scaling=scaling)


class DoG(R.Ref):
    """Ivgi et al. (2023): eta_t = rbar_t / sqrt(G_t + eps), rbar_t = max(r_eps, max_i |x_i - x_0|),
    over all leaves together (global) or per leaf (L-DoG). Weight decay is added to the gradient first."""

    def __init__(
        self,
        layerwise,
        init_kind="heuristic",
        init_value=1e-6,
        eps=1e-8,
        global_scale=1.0,
        learning_rate=-1.0,
        weight_decay=None,
        mask=None,
    ):
        self.layerwise, self.kind, self.value, self.eps, self.scale = (
            layerwise,
            init_kind,
            init_value,
            eps,
            global_scale,
        )
        self.lr, self.wd, self.mask = learning_rate, weight_decay, flat_mask(mask)
        self.distance_mattered = False

    def init(self, params):
        self.t = 0
        self.x0 = [p.copy() for p in params]
        blocks = len(params) if self.layerwise else 1
        self.rbar, self.G = [0.0] * blocks, [0.0] * blocks

    def _groups(self, xs):
        return [[x] for x in xs] if self.layerwise else [list(xs)]

    def update(self, grads, params):
        if self.wd is not None:
            wd = R.value_at(self.wd, self.t)
            grads = [g + wd * p if m else g for g, p, m in zip(grads, params, self.mask)]
        lr = R.value_at(self.lr, self.t)
        etas = []
        for b, (gs, ps, x0s) in enumerate(zip(self._groups(grads), self._groups(params), self._groups(self.x0))):
            distance = np.sqrt(sum(norm(p - x0) ** 2 for p, x0 in zip(ps, x0s)))
            self.G[b] += sum(norm(g) ** 2 for g in gs)
            if self.t == 0:
                x0_norm = np.sqrt(sum(norm(x0) ** 2 for x0 in x0s))
                r_eps = {
                    "heuristic": self.value * (1 + x0_norm),
                    "distance": self.value,
                    "learning_rate": self.value * np.sqrt(self.G[b] + self.eps),
                }[self.kind]
                self.rbar[b] = r_eps
            self.distance_mattered |= distance > self.rbar[b]
            self.rbar[b] = max(self.rbar[b], distance)
            etas += [self.scale * self.rbar[b] / np.sqrt(self.G[b] + self.eps)] * len(gs)
        self.t += 1
        return [-lr * eta * g for eta, g in zip(etas, grads)]


def ref_dog(learning_rate=1.0, init_step=("heuristic", 1e-6), eps=1e-8, weight_decay=None, mask=None):
    return DoG(
        False, init_step[0], init_step[1], eps, learning_rate=learning_rate, weight_decay=weight_decay, mask=mask
    )


def ref_ldog(reps_rel=1e-6, eps=1e-8, param_dtype=None, global_scale=1.0):
    return DoG(True, "heuristic", reps_rel, eps, global_scale)


def ref_dowg(
    params,
    grads,
    steps,
    learning_rate=1.0,
    init_estim_sq_dist=None,
    eps=1e-4,
    weight_decay=None,
    mask=None,
    eps_in_step=False,
):
    """DoWG (Khaled, Mishchenko & Jin, 2023, arXiv 2305.16284, Algorithm 1), ``steps`` steps from
    ``params`` (a dict of arrays), with norms over all leaves together:

        rbar_t = max(|x_t - x_0|, rbar_{t-1}),  rbar_{-1} = r_eps
        v_t    = v_{t-1} + rbar_t^2 |g_t|^2,     v_{-1} = 0
        eta_t  = rbar_t^2 / sqrt(v_t)
        x_{t+1} = x_t - c eta_t g_t

    ``r_eps^2`` is ``init_estim_sq_dist``, or ``eps`` when that is None; ``eps_in_step`` divides by
    ``sqrt(v_t) + eps`` instead. ``grads`` is a list of gradient dicts or a function of the
    parameters' dict; weight decay is added to the gradient first (on the leaves ``mask``
    selects). Returns one dict per step: ``params`` (after the step), ``rbar_sq``, ``v``, ``eta``.
    """
    x = {k: np.array(v, np.result_type(v, np.float64)) for k, v in params.items()}  # complex stays complex
    x0 = {k: v.copy() for k, v in x.items()}
    rbar_sq = float(eps if init_estim_sq_dist is None else init_estim_sq_dist)
    v = 0.0
    history = []
    for t in range(steps):
        g = grads(x) if callable(grads) else grads[t]
        g = {k: np.asarray(g[k], np.result_type(g[k], np.float64)) for k in x}
        if weight_decay is not None:
            wd = R.value_at(weight_decay, t)
            g = {k: g[k] + wd * x[k] if mask is None or mask[k] else g[k] for k in x}
        dist_sq = sum(float(np.sum(np.abs(x[k] - x0[k]) ** 2)) for k in x)
        rbar_sq = max(dist_sq, rbar_sq)
        v = v + rbar_sq * sum(float(np.sum(np.abs(g[k]) ** 2)) for k in x)
        eta = rbar_sq / (np.sqrt(v) + (eps if eps_in_step else 0.0))
        lr = R.value_at(learning_rate, t)
        x = {k: x[k] - lr * eta * g[k] for k in x}
        history.append(dict(params={k: a.copy() for k, a in x.items()}, rbar_sq=rbar_sq, v=v, eta=eta))
    return history
