"""Layer-wise scaling (trust ratio, block norm/RMS, update normalization) and LARS, LAMB, Fromage.

Each is run for 12 steps against an independent NumPy reference written from
its paper, on the nested tree of ``references.py`` (dicts, a list, a tuple, a
0-d and a 4-d leaf), eagerly and under ``jax.jit``, in float32 and float64.
This file also holds the edge-case check (zero, tiny and huge gradients) that
the other test files of this family import.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
import problems
import references as R

MODES = ["eager", "jit"]
DTYPES = ["float32", "float64"]


def norm(x):
    return float(np.sqrt(np.sum(np.square(x))))


def flat_mask(mask):
    """A mask (True, a tree of bools or a function of the params) as one bool per leaf."""
    params = R.param_tree(np.float64)
    if mask is True or mask is None:
        return [True] * len(jax.tree.leaves(params))
    if mask is False:
        return [False] * len(jax.tree.leaves(params))
    return jax.tree.leaves(mask(params) if callable(mask) else mask)


def trust_ratio(p, u, coefficient=1.0, min_norm=0.0, eps=0.0):
    p_norm, u_norm = max(norm(p), min_norm), max(norm(u), min_norm)
    return coefficient * p_norm / (u_norm + eps) if p_norm > 0 and u_norm > 0 else 1.0


# ----------------------------------------------------------------- references


class TrustRatio(R.Ref):
    def __init__(self, min_norm=0.0, trust_coefficient=1.0, eps=0.0):
        self.kw = dict(coefficient=trust_coefficient, min_norm=min_norm, eps=eps)

    def update(self, grads, params):
        return [trust_ratio(p, g, **self.kw) * g for g, p in zip(grads, params)]


class ParamBlock(R.Ref):
    def __init__(self, size, min_scale=1e-3):
        self.size, self.min_scale = size, min_scale

    def update(self, grads, params):
        return [g * max(self.size(p), self.min_scale) for g, p in zip(grads, params)]


def rms(x):
    return norm(x) / np.sqrt(max(np.size(x), 1))


class NormalizeByUpdateNorm(R.Ref):
    def __init__(self, scale_factor=1.0, eps=1e-6):
        self.s, self.eps = scale_factor, eps

    def update(self, grads, params):
        total = np.sqrt(sum(np.sum(g**2) for g in grads))
        return [self.s * g / (total + self.eps) for g in grads]


class LARS(R.Ref):
    """You, Gitman & Ginsburg (2017), Algorithm 1, with the trust ratio of the decayed gradient."""

    def __init__(self, learning_rate=1.0, weight_decay=0.0, weight_decay_mask=True, trust_coefficient=0.001,
                 eps=0.0, trust_ratio_mask=True, momentum=0.9, nesterov=False):
        self.lr, self.wd, self.tc, self.eps, self.m, self.nesterov = (
            learning_rate, weight_decay, trust_coefficient, eps, momentum, nesterov
        )
        self.wd_mask, self.tr_mask = flat_mask(weight_decay_mask), flat_mask(trust_ratio_mask)

    def init(self, params):
        self.t, self.v = 0, [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        lr, wd = R.value_at(self.lr, self.t), R.value_at(self.wd, self.t)
        self.t += 1
        out = []
        for i, (g, p) in enumerate(zip(grads, params)):
            d = g + wd * p if self.wd_mask[i] else g
            local = trust_ratio(p, d, self.tc, eps=self.eps) if self.tr_mask[i] else 1.0
            step = lr * local * d
            self.v[i] = self.m * self.v[i] + step
            out.append(-(step + self.m * self.v[i]) if self.nesterov else -self.v[i])
        return out


class LAMB(R.Ref):
    """You et al. (2019), Algorithm 2 with phi the identity."""

    def __init__(self, learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-6, eps_root=0.0, weight_decay=0.0, mask=None):
        self.lr, self.b1, self.b2, self.eps, self.eps_root, self.wd = learning_rate, b1, b2, eps, eps_root, weight_decay
        self.mask = flat_mask(mask)

    def init(self, params):
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def update(self, grads, params):
        lr, wd = R.value_at(self.lr, self.t), R.value_at(self.wd, self.t)
        self.t += 1
        out = []
        for i, (g, p) in enumerate(zip(grads, params)):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g**2
            m_hat, v_hat = self.m[i] / (1 - self.b1**self.t), self.v[i] / (1 - self.b2**self.t)
            r = m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps)
            d = r + wd * p if self.mask[i] else r
            out.append(-lr * trust_ratio(p, d) * d)
        return out


class Fromage(R.Ref):
    """Bernstein et al. (2020), Algorithm 1: W <- (W - eta |W|/|g| g) / sqrt(1 + eta^2)."""

    def __init__(self, learning_rate=1e-2, min_norm=1e-6):
        self.lr, self.min_norm = learning_rate, min_norm

    def update(self, grads, params):
        eta = R.value_at(self.lr, self.t)
        self.t += 1
        out = []
        for g, p in zip(grads, params):
            new = (p - eta * trust_ratio(p, g, min_norm=self.min_norm) * g) / np.sqrt(1 + eta**2)
            out.append(new - p)
        return out


# ------------------------------------------------------------ step by step agreement

decay_schedule = lambda t: 0.01 * (1.0 + t)  # noqa: E731
lr_schedule = lambda t: 0.5 / (1.0 + t)  # noqa: E731

CASES = [
    ("scale_by_trust_ratio", "default", dict(), TrustRatio),
    ("scale_by_trust_ratio", "custom", dict(min_norm=0.5, trust_coefficient=0.02, eps=1e-3), TrustRatio),
    ("scale_by_param_block_norm", "default", dict(), lambda **kw: ParamBlock(norm, **kw)),
    ("scale_by_param_block_norm", "large_floor", dict(min_scale=2.0), lambda **kw: ParamBlock(norm, **kw)),
    ("scale_by_param_block_rms", "default", dict(), lambda **kw: ParamBlock(rms, **kw)),
    ("scale_by_param_block_rms", "large_floor", dict(min_scale=1.0), lambda **kw: ParamBlock(rms, **kw)),
    ("normalize_by_update_norm", "default", dict(), NormalizeByUpdateNorm),
    ("normalize_by_update_norm", "custom", dict(scale_factor=-0.3, eps=0.5), NormalizeByUpdateNorm),
    ("lars", "default", dict(), LARS),
    ("lars", "decay_masks", dict(learning_rate=0.5, weight_decay=0.1, weight_decay_mask=R.MASK_TREE,
                                 trust_ratio_mask=R.mask_matrices, trust_coefficient=0.01, eps=1e-3), LARS),
    ("lars", "nesterov_schedules", dict(learning_rate=lr_schedule, weight_decay=decay_schedule, momentum=0.8,
                                        nesterov=True), LARS),
    ("lars", "no_trust_ratio", dict(trust_ratio_mask=False, weight_decay=0.1, weight_decay_mask=False), LARS),
    ("lamb", "default", dict(), LAMB),
    ("lamb", "custom", dict(learning_rate=0.01, b1=0.8, b2=0.99, eps=1e-3, eps_root=1e-4, weight_decay=0.1,
                            mask=R.MASK_TREE), LAMB),
    ("lamb", "schedules", dict(learning_rate=lr_schedule, weight_decay=decay_schedule, mask=R.mask_matrices), LAMB),
    ("fromage", "default", dict(), Fromage),
    ("fromage", "schedule", dict(learning_rate=lambda t: 0.3 / (1.0 + t), min_norm=0.05), Fromage),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,kwargs,ref", [pytest.param(n, kw, ref, id=f"{n}-{label}") for n, label, kw, ref in CASES]
)
def test_matches_reference(name, kwargs, ref, dtype, mode):
    tx, ref = getattr(gradtx, name)(**kwargs), ref(**kwargs)
    if name.startswith(("scale_by", "normalize")):
        # a direction, not an optimizer: step along it with -0.1 (a trust ratio of 1
        # alone would send a 0-d leaf to exactly 0 or double it)
        tx, ref = gradtx.chain(tx, gradtx.scale(-0.1)), R.Chain(ref, R.Scale(-0.1))
    R.run_against_reference(tx, ref, dtype, mode)


@pytest.mark.parametrize("mode", MODES)
def test_zero_params_and_zero_grads_have_a_trust_ratio_of_one(mode):
    """A zero leaf (a fresh bias) still moves, and a zero gradient gives a zero update: no 0/0."""
    tx = gradtx.scale_by_trust_ratio()
    params = {"bias": jnp.zeros(3), "w": jnp.ones(3)}
    update = jax.jit(tx.update) if mode == "jit" else tx.update
    u, _ = update({"bias": jnp.full(3, 0.5), "w": jnp.zeros(3)}, tx.init(params), params)
    np.testing.assert_array_equal(u["bias"], np.full(3, 0.5))
    np.testing.assert_array_equal(u["w"], np.zeros(3))


def test_trust_ratio_keeps_the_update_norm_at_the_param_norm():
    params = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.full(4, -2.0)}
    grads = {"w": jnp.full((3, 4), 1e-3), "b": jnp.full(4, 50.0)}
    tx = gradtx.scale_by_trust_ratio(trust_coefficient=0.1)
    u, _ = tx.update(grads, tx.init(params), params)
    for k in params:
        assert float(jnp.linalg.norm(u[k])) == pytest.approx(0.1 * float(jnp.linalg.norm(params[k])), rel=1e-5)


def test_fromage_keeps_the_param_norm_bounded():
    """Fromage's step is orthogonal-ish and shrunk by 1/sqrt(1+eta^2): norms cannot blow up."""
    tx = gradtx.fromage(0.1)
    params = {"w": jnp.ones((4, 4))}
    state = tx.init(params)
    for _ in range(50):
        u, state = tx.update({"w": -params["w"]}, state, params)  # the gradient pushes the norm up
        params = gradtx.apply_updates(params, u)
    # |W| grows by at most (1 + eta) / sqrt(1 + eta^2) per step
    assert float(jnp.linalg.norm(params["w"])) <= 4.0 * (1.1 / np.sqrt(1.01)) ** 50 * (1 + 1e-5)


def test_hyperparameters_are_readable_and_validated():
    state = gradtx.lars(0.5, weight_decay=1e-4).init({"w": jnp.ones(2)})
    assert gradtx.hyperparams(state) == {
        "weight_decay": 1e-4, "min_norm": 0.0, "trust_coefficient": 0.001, "eps": 0.0,
        "learning_rate": 0.5, "momentum": 0.9,
    }
    lamb_names = set(gradtx.hyperparams(gradtx.lamb().init({"w": jnp.ones(2)})))
    assert lamb_names >= {"b1", "b2", "0/eps", "2/eps", "weight_decay", "trust_coefficient", "learning_rate"}
    assert gradtx.hyperparams(gradtx.fromage().init(jnp.ones(2)))["learning_rate"] == 0.01
    for build, name in [
        (lambda: gradtx.scale_by_trust_ratio(min_norm=-1.0), "min_norm"),
        (lambda: gradtx.scale_by_trust_ratio(eps=-1.0), "eps"),
        (lambda: gradtx.scale_by_param_block_norm(-1.0), "min_scale"),
        (lambda: gradtx.normalize_by_update_norm(eps=-1.0), "eps"),
        (lambda: gradtx.lars(-1.0), "learning_rate"),
        (lambda: gradtx.lamb(b1=1.0), "b1"),
        (lambda: gradtx.fromage(-0.1), "learning_rate"),
    ]:
        with pytest.raises(ValueError, match=f"^{name} must be in"):
            build()


@pytest.mark.parametrize("name", ["scale_by_trust_ratio", "scale_by_param_block_norm", "scale_by_param_block_rms"])
def test_transforms_that_need_params_say_so(name):
    tx = getattr(gradtx, name)()
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


TRANSFORMS = {
    "scale_by_trust_ratio": lambda: gradtx.scale_by_trust_ratio(),
    "scale_by_param_block_norm": lambda: gradtx.scale_by_param_block_norm(),
    "scale_by_param_block_rms": lambda: gradtx.scale_by_param_block_rms(),
    "normalize_by_update_norm": lambda: gradtx.normalize_by_update_norm(),
    "lars": lambda: gradtx.lars(weight_decay=0.1),
    "lamb": lambda: gradtx.lamb(weight_decay=0.1),
    "fromage": lambda: gradtx.fromage(),
}




@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_bfloat16_empty_tree_and_none_leaf(name, mode):
    R.check_bfloat16_empty_and_none(TRANSFORMS[name], mode)


# ------------------------------------------------------------------ edge cases

EDGE_PARAMS = {
    "scalar": jnp.asarray(0.7), "size_one": jnp.asarray([-1.3]), "matrix": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4),
    "zero": jnp.zeros((2, 2)),
}
EDGE_SCALES = [0.0, 1e-30, 1e30]


def check_edge_cases(make, scale, steps=3, apply=True, **extra):
    """Zero, tiny (1e-30) and huge (1e30) float32 gradients on scalar, size-1, matrix and all-zero
    leaves: every update stays finite, eagerly and under jit; so do the parameters when the
    updates are applied (``apply=False`` keeps them fixed, for directions that are not steps)."""
    for update_fn in ("eager", "jit"):
        tx = make()
        params = EDGE_PARAMS
        state = tx.init(params)
        update = jax.jit(tx.update) if update_fn == "jit" else tx.update
        for step in range(steps):
            sign = 1.0 if step % 2 == 0 else -0.5
            grads = jax.tree.map(lambda p: jnp.full(p.shape, sign * scale, jnp.float32), params)
            updates, state = update(grads, state, params, **extra)
            for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]:
                assert u.dtype == jnp.float32
                assert bool(jnp.all(jnp.isfinite(u))), f"scale {scale}, step {step}, {update_fn}: {path} = {u}"
            if apply:
                params = gradtx.apply_updates(params, updates)
                assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
    return updates


@pytest.mark.parametrize("scale", EDGE_SCALES)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_edge_cases_stay_finite(name, scale):
    direction = name.startswith(("scale_by", "normalize"))
    updates = check_edge_cases(TRANSFORMS[name], scale, apply=not direction)
    if scale == 0.0 and direction:
        assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates)), "a zero gradient must give a zero update"


def test_tiny_gradients_are_not_lost_to_underflow():
    """1e-30 squared underflows in float32; the scaled norms still see the true ratio."""
    params = {"w": jnp.full(4, 2.0)}
    tx = gradtx.scale_by_trust_ratio()
    u, _ = tx.update({"w": jnp.full(4, 1e-30)}, tx.init(params), params)
    np.testing.assert_allclose(u["w"], np.full(4, 2.0), rtol=1e-5)  # |u| scaled up to |w|
    tx = gradtx.normalize_by_update_norm(eps=0.0)
    u, _ = tx.update({"w": jnp.full(4, 1e30)}, tx.init(params))
    np.testing.assert_allclose(u["w"], np.full(4, 0.5), rtol=1e-5)


# ------------------------------------------------------------------ convergence

# (optimizer, problem, learning rate, steps, factor): with every other argument at
# its default, the loss must drop by at least `factor` within `steps` steps. The
# factors reached (CPU, float32) are noted; the ones required leave a margin.
CONVERGENCE = [
    ("lars", "quadratic", 3.0, 200, 1e5),        # reached 3.5e6
    ("lars", "rosenbrock", 10.0, 2000, 100.0),   # reached 730
    ("lars", "digits", 3.0, 200, 100.0),         # reached 502
    ("lamb", "quadratic", 0.03, 200, 1e4),       # reached 2.0e5
    # Rosenbrock's parameters are scalars: a per-leaf trust ratio makes each step
    # lr * |x|, so x approaches 0 geometrically and cannot cross it; the loss
    # tends to (1 - 0)^2 = 1 from 12.5, a factor of 12.5 at most.
    ("lamb", "rosenbrock", 0.03, 2000, 10.0),    # reached 12.5
    ("lamb", "digits", 0.03, 200, 10.0),         # reached 46
    ("fromage", "quadratic", 0.03, 200, 1e4),    # reached 6.6e5
    ("fromage", "rosenbrock", 0.1, 2000, 5.0),   # reached 23
    ("fromage", "digits", 0.1, 200, 2.5),        # reached 5.4 (zero init: Fromage's steps scale with |W|)
]


@pytest.mark.parametrize("name,problem,lr,steps,factor", CONVERGENCE)
def test_convergence(name, problem, lr, steps, factor):
    initial, final, _ = problems.run(getattr(gradtx, name)(lr), problem, steps)
    assert np.isfinite(final) and initial / final >= factor, (initial, final, initial / final)
