"""signSGD, Signum, Lion and Rprop-.

Step by step for 12 steps against NumPy references written from the papers
(Bernstein et al. 2018; Chen et al. 2023, Algorithm 2; Riedmiller & Braun 1993
without backtracking, i.e. Igel & Hüsken's Rprop-), on the references' nested
tree, eagerly and under ``jax.jit``, in float32 and float64. Then convergence
and extreme gradients, which sign methods take in their stride.
"""

import jax
import jax.numpy as jnp
import pytest

import gradtx

import references as R
from helpers import check_tiny_and_huge_gradients, check_zero_gradients, run_convergence
from references.sign import Lion, Rprop, Sign

CASES = [
    ("scale_by_sign", lambda: gradtx.scale_by_sign(), lambda: Sign()),
    ("sign_sgd", lambda: gradtx.sign_sgd(0.1), lambda: R.Chain(Sign(), R.ScaleByLearningRate(0.1))),
    (
        "signum",
        lambda: gradtx.signum(0.05, beta=0.8),
        lambda: R.Chain(R.EMA(0.8, debias=False), Sign(), R.ScaleByLearningRate(0.05)),
    ),
    (
        "signum-schedule",
        lambda: gradtx.signum(lambda t: 0.1 / (1 + t)),
        lambda: R.Chain(R.EMA(0.9, debias=False), Sign(), R.ScaleByLearningRate(lambda t: 0.1 / (1 + t))),
    ),
    ("scale_by_lion", lambda: gradtx.scale_by_lion(), lambda: Lion()),
    ("scale_by_lion-custom", lambda: gradtx.scale_by_lion(0.5, 0.8), lambda: Lion(0.5, 0.8)),
    ("lion", lambda: gradtx.lion(), lambda: R.Chain(Lion(), R.AddDecayedWeights(1e-3), R.ScaleByLearningRate(1e-4))),
    (
        "lion-decay-mask-schedule",
        lambda: gradtx.lion(0.02, weight_decay=lambda t: 0.5 / (1 + t), mask=R.mask_matrices),
        lambda: R.Chain(
            Lion(), R.AddDecayedWeights(lambda t: 0.5 / (1 + t), R.mask_matrices), R.ScaleByLearningRate(0.02)
        ),
    ),
    ("scale_by_rprop", lambda: gradtx.scale_by_rprop(0.1), lambda: Rprop(0.1)),
    (
        "scale_by_rprop-clamped",
        lambda: gradtx.scale_by_rprop(0.1, 0.3, 1.5, min_step_size=0.02, max_step_size=0.2),
        lambda: Rprop(0.1, 0.3, 1.5, 0.02, 0.2),
    ),
    ("rprop", lambda: gradtx.rprop(), lambda: R.Chain(Rprop(0.1), R.Scale(-1.0))),
    (
        "rprop-minus",
        lambda: gradtx.rprop(variant="rprop-"),
        lambda: R.Chain(Rprop(0.1, variant="rprop-"), R.Scale(-1.0)),
    ),
]


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make_tx,make_ref", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_matches_reference(make_tx, make_ref, dtype, mode):
    ref = R.run_against_reference(make_tx(), make_ref(), dtype, mode)
    rprop = R.find(ref, Rprop)
    if rprop is not None:
        assert {"grow", "shrink", "keep"} <= rprop.seen
        if rprop.hi < 1:
            assert "clamp" in rprop.seen


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_none_leaves_and_zero_gradients_against_the_references(mode):
    for make_tx, make_ref in [c[1:] for c in CASES if c[0] != "lion-decay-mask-schedule"]:
        R.run_against_reference(
            make_tx(), make_ref(), "float32", mode, steps=4, trees=(R.none_param_tree, R.none_grad_trees), zero_until=2
        )


def test_signum_and_lion_read_back_their_arguments():
    params = {"w": jnp.ones(2)}
    assert gradtx.hyperparams(gradtx.signum(0.01, beta=0.8).init(params)) == {"beta": 0.8, "learning_rate": 0.01}
    state = gradtx.set_hyperparams(gradtx.signum().init(params), beta=0.5)
    assert gradtx.hyperparams(state)["beta"] == 0.5
    assert gradtx.hyperparams(gradtx.lion().init(params)) == {
        "b1": 0.9,
        "b2": 0.99,
        "weight_decay": 1e-3,
        "learning_rate": 1e-4,
    }


def test_renamed_hyperparameters_can_be_scheduled_by_inject_hyperparams():
    """signum keeps ema's decay as beta, sm3 and adafactor keep b1 / decay as momentum."""
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    grads = jax.tree.map(lambda x: 0.5 * x, params)
    for factory, name in [(gradtx.signum, "beta"), (gradtx.sm3, "momentum"), (gradtx.adafactor, "momentum")]:
        tx = gradtx.inject_hyperparams(factory)(**{name: lambda t: 0.5 + 0.1 * t})
        state, update = tx.init(params), jax.jit(tx.update)
        for _ in range(3):
            _, state = update(grads, state, params)
        assert gradtx.hyperparams(state)[name] == pytest.approx(0.8), factory.__name__


def test_lion_modes_other_than_the_papers_are_refused():
    gradtx.scale_by_lion(mode="hard")
    with pytest.raises(ValueError, match="mode='smooth' is not implemented"):
        gradtx.scale_by_lion(mode="smooth")


def test_rprop_minus_steps_from_the_first_update_and_keeps_stepping_after_a_sign_flip():
    """Rprop-, unlike iRprop- (the default, torch.optim's), takes the shrunk step after a flip."""
    tx = gradtx.rprop(0.1, variant="rprop-")
    state, updates = tx.init(jnp.zeros(1)), []
    for g in [1.0, 1.0, -1.0, -1.0, 0.0, -1.0]:
        u, state = tx.update(jnp.array([g]), state)
        updates.append(round(u.item(), 6))
    assert updates == [-0.1, -0.12, 0.06, 0.072, 0.0, 0.072]  # after a zero gradient Delta is kept


def test_irprop_minus_skips_the_step_after_a_sign_flip_and_forgets_that_gradient():
    """torch.optim.Rprop's sequence, worked by hand: the flip shrinks Delta to 0.06 and steps 0;
    the next gradient is compared with 0, so Delta stays 0.06 and the step is taken."""
    tx = gradtx.rprop(0.1)
    state, updates = tx.init(jnp.zeros(1)), []
    for g in [1.0, 1.0, -1.0, -1.0, -1.0]:
        u, state = tx.update(jnp.array([g]), state)
        updates.append(round(u.item(), 6))
    assert updates == [-0.1, -0.12, 0.0, 0.06, 0.072]
    assert float(state[0].prev_updates[0]) == -1.0  # Optax's name for the stored gradient


# --------------------------------------------------------------------------- convergence

CONVERGENCE = [
    ("sign_sgd", "quadratic", 1e-2, 300, 1e6),  # 2.2e12
    ("sign_sgd", "rosenbrock", None, 3000, 20),  # 87 (it zigzags along the valley in steps of lr)
    ("sign_sgd", "digits", 1e-2, 300, 8),  # 33
    ("signum", "quadratic", 1e-2, 300, 300),  # 2.5e3
    ("signum", "rosenbrock", 3e-2, 300, 30),  # 137
    ("signum", "digits", 3e-2, 300, 300),  # 2.3e3
    ("lion", "quadratic", 1e-2, 300, 1e5),  # 1.1e7
    ("lion", "rosenbrock", 1e-2, 1000, 50),  # 385
    ("lion", "digits", 3e-2, 300, 50),  # 476
    ("rprop", "quadratic", None, 300, 1e8),  # 1e12
    ("rprop", "rosenbrock", None, 1000, 50),  # 250
    ("rprop", "digits", None, 300, 200),  # 1.5e3
]


@pytest.mark.parametrize("name,problem,lr,steps,factor", CONVERGENCE, ids=[f"{c[0]}-{c[1]}" for c in CONVERGENCE])
def test_convergence(name, problem, lr, steps, factor):
    run_convergence(getattr(gradtx, name), lr, problem, steps, factor)


# --------------------------------------------------------------------------- edge cases

# (optimizer without weight decay, the size of its update after 3 steps of 1e30 gradients)
EDGE = {
    "sign_sgd": (lambda: gradtx.sign_sgd(), 1e-3),
    "signum": (lambda: gradtx.signum(), 1e-3),
    "lion": (lambda: gradtx.lion(weight_decay=0.0), 1e-4),
    "rprop": (lambda: gradtx.rprop(), 0.1 * 1.2**2),
}


@pytest.mark.parametrize("name", sorted(EDGE))
def test_zero_gradients_give_zero_updates(name):
    check_zero_gradients(EDGE[name][0])


@pytest.mark.parametrize("name", sorted(EDGE))
def test_tiny_and_huge_float32_gradients_stay_finite(name):
    check_tiny_and_huge_gradients(*EDGE[name])
