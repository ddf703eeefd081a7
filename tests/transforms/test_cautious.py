"""Cautious updates (Liang et al. 2024) step by step against the NumPy references of
``references/cautious.py``: C-AdamW and C-Lion written from the paper (the mask on the direction,
the unmasked decoupled decay after it) and the rule alone around other references.

The gradients of ``flip_grad_trees`` keep one sign per entry for four steps, so that the moments
line up with them; at step 5 every entry turns and shrinks a thousandfold, so that in every leaf
no direction follows its gradient (mean(phi) = 0: the update is the decay alone); the steps after
are random, and the masks drop some entries of most leaves. A leaf of 2,000 entries with one kept
shows the floor max(mean(phi), 1e-3).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.adam import ScaleByAdamState
from gradtx.optimizers.sign import ScaleByLionState
from gradtx.transforms.cautious import CautiousState, cautious

import references as R
from helpers import run_problem
from references.cautious import CAdamW, Cautious, CLion

DTYPES = ["float32", "float64"]
FLIP_AT = 5


def flip_grad_trees(dtype, steps=R.STEPS, seed=1, zero_until=0):
    """Steps 1-4: one sign per entry; step 5: every sign turned, 1e-3 as large; then random."""
    rng = np.random.default_rng(seed)
    signs: dict = {}
    out = []
    for step in range(1, steps + 1):

        def make(path, shape, step=step):
            scale = R.GRAD_SCALES[path] * np.exp(0.5 * rng.standard_normal())
            size = 0.5 + np.abs(rng.standard_normal(shape))
            if step < FLIP_AT:
                g = signs.setdefault(path, rng.choice([-1.0, 1.0], size=shape)) * scale * size
            elif step == FLIP_AT:
                g = -signs[path] * 1e-3 * scale * size
            else:
                g = scale * rng.standard_normal(shape)
            g = np.array(g, np.float64).reshape(-1)
            if step <= zero_until:
                g[0] = 0.0
            return np.asarray(g.reshape(shape), dtype)

        out.append(R._build(make))
    return out


FLIP = (R.param_tree, flip_grad_trees)
LEAVES = len(jax.tree.leaves(R.param_tree(np.float32)))


def schedule(step):
    return 0.02 / (1 + 0.2 * step)


# (id, gradtx optimizer, reference); the same keyword arguments build both.
NAMED = [
    ("c_adamw", lambda **kw: gradtx.adamw(cautious=True, **kw), CAdamW, dict(learning_rate=0.01, weight_decay=0.1)),
    (
        "c_adamw_schedule",
        lambda **kw: gradtx.adamw(cautious=True, **kw),
        CAdamW,
        dict(learning_rate=schedule, b1=0.8, b2=0.9, eps=1e-6, weight_decay=0.5),
    ),
    ("c_lion", lambda **kw: gradtx.lion(cautious=True, **kw), CLion, dict(learning_rate=0.01, weight_decay=0.1)),
    (
        "c_lion_schedule",
        lambda **kw: gradtx.lion(cautious=True, **kw),
        CLion,
        dict(learning_rate=schedule, b1=0.5, b2=0.9, weight_decay=0.0),
    ),
]


# Every row under jit in both dtypes; eager (slow: op by op) once; test_jit_equals_eager holds
# eager to jit for both optimizers.
NAMED_RUNS = [
    pytest.param(*c[1:], dtype, mode, id=f"{c[0]}-{dtype}-{mode}")
    for c in NAMED
    for dtype in DTYPES
    for mode in R.MODES
    if mode == "jit" or (c[0], dtype) == ("c_adamw", "float32")
]


@pytest.mark.parametrize("make,make_ref,kwargs,dtype,mode", NAMED_RUNS)
def test_named_optimizers_match_reference(make, make_ref, kwargs, dtype, mode):
    ref = R.run_against_reference(make(**kwargs), make_ref(**kwargs), dtype, mode, trees=FLIP)
    assert ref.all_dropped >= LEAVES, ref.all_dropped  # step 5, in every leaf
    assert ref.dropped > ref.all_dropped, ref.dropped  # and partial masks on the random steps
    assert ref.floored == 0


# (id, gradtx transform, its reference): the rule alone around other transforms, on random gradients.
WRAPPED = [
    (
        "sgd_momentum",
        lambda: cautious(gradtx.sgd(0.05, momentum=0.9)),
        lambda: Cautious(R.ref_sgd(0.05, momentum=0.9)),
    ),
    (
        "adamw_decay_masked_too",
        lambda: cautious(gradtx.adamw(0.01, weight_decay=0.5)),
        lambda: Cautious(R.ref_adamw(0.01, weight_decay=0.5)),
    ),
    (
        "scale_by_adam_direction",
        lambda: cautious(gradtx.scale_by_adam(b1=0.8), mask_eps=0.2, descent=False),
        lambda: Cautious(R.Adam(b1=0.8), mask_eps=0.2, descent=False),
    ),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make,make_ref", [pytest.param(*c[1:], id=c[0]) for c in WRAPPED])
def test_wrapper_matches_reference(make, make_ref, dtype):
    ref = R.run_against_reference(make(), make_ref(), dtype, "jit")
    assert ref.dropped > 0 and ref.all_dropped > 0, (ref.dropped, ref.all_dropped)


def test_wrapper_matches_reference_eager_with_zero_gradients():
    """Zero gradients (the first entry of every leaf for 3 steps) are never descended along."""
    ref = R.run_against_reference(
        cautious(gradtx.sgd(0.05, momentum=0.9)),
        Cautious(R.ref_sgd(0.05, momentum=0.9)),
        "float32",
        "eager",
        zero_until=3,
    )
    assert ref.dropped >= 3 * LEAVES


def test_the_floor_of_the_kept_fraction():
    """One entry of 2,000 kept: mean(phi) = 5e-4 < 1e-3, so it is scaled by 1e3, not 2e3."""
    n = 2000
    tx = cautious(gradtx.trace(0.9), descent=False)
    ref = Cautious(R.Trace(0.9), descent=False)
    grads = [np.ones(n), np.where(np.arange(n) == 7, 1.0, -0.01)]  # momentum stays positive
    state = tx.init(jnp.zeros(n))
    ref.init([np.zeros(n)])
    for g in grads:
        u, state = jax.jit(tx.update)(jnp.asarray(g, jnp.float32), state)
        want = ref.update([g], [np.zeros(n)])[0]
    assert ref.floored == 1
    np.testing.assert_allclose(np.asarray(u), want, rtol=1e-6)
    assert float(u[7]) == pytest.approx(1.9 * 1e3, rel=1e-6) and np.count_nonzero(np.asarray(u)) == 1
    # a higher floor: every kept entry scaled by 1 / mask_eps
    _, state = tx.update(jnp.ones(4), tx.init(jnp.zeros(4)))
    u, _ = tx.update(jnp.array([1.0, -0.5, -0.5, -0.5]), gradtx.set_hyperparams(state, mask_eps=0.5))
    np.testing.assert_allclose(np.asarray(u), [3.8, 0.0, 0.0, 0.0], rtol=1e-6)
    # no floor: the one kept entry of 2,000 is scaled by 2,000, and a leaf with none kept is 0, not NaN
    tx = cautious(gradtx.trace(0.9), mask_eps=0.0, descent=False)
    _, state = tx.update(jnp.ones(n), tx.init(jnp.zeros(n)))
    u, state = tx.update(jnp.asarray(grads[1], jnp.float32), state)
    assert float(u[7]) == pytest.approx(1.9 * n, rel=1e-6)
    u, _ = tx.update(-jnp.full(n, 1e-3), state)
    np.testing.assert_array_equal(np.asarray(u), np.zeros(n))


def test_a_leaf_with_no_descent_gets_the_decay_alone():
    params = {"w": jnp.array([1.0, -2.0, 0.5]), "s": jnp.asarray(3.0)}
    for tx, lr, wd in [
        (gradtx.adamw(0.1, weight_decay=0.2, cautious=True), 0.1, 0.2),
        (gradtx.lion(0.1, cautious=True), 0.1, 1e-3),
    ]:
        state = tx.init(params)
        _, state = tx.update({"w": jnp.array([1.0, 2.0, -3.0]), "s": jnp.asarray(1.0)}, state, params)
        u, _ = tx.update({"w": jnp.array([-1e-3, -1e-3, 1e-3]), "s": jnp.asarray(-1e-3)}, state, params)
        for got, p in zip(jax.tree.leaves(u), jax.tree.leaves(params)):
            np.testing.assert_allclose(np.asarray(got), -lr * wd * np.asarray(p), rtol=1e-6)


def test_without_the_option_nothing_changes():
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    grads = [jax.tree.map(jnp.asarray, g) for g in R.grad_trees(np.float32, 3)]
    for make, inner in [(gradtx.adamw, ScaleByAdamState), (gradtx.lion, ScaleByLionState)]:
        default, off = make(0.01), make(0.01, cautious=False)
        s1, s2 = default.init(params), off.init(params)
        assert type(s1[0]) is inner and R.state_signature(s1) == R.state_signature(s2)
        assert "mask_eps" not in gradtx.hyperparams(s1)
        for g in grads:
            (u1, s1), (u2, s2) = default.update(g, s1, params), off.update(g, s2, params)
            for a, b in zip(jax.tree.leaves((u1, s1)), jax.tree.leaves((u2, s2))):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        on = make(0.01, cautious=True).init(params)
        assert type(on[0]) is CautiousState and type(on[0].inner_state) is inner


def test_hyperparams_are_readable_and_settable():
    params = {"w": jnp.array([1.0, -2.0, 0.5, 0.3]), "b": jnp.array([0.5])}
    grads = [
        {"w": jnp.array([0.3, -1.0, 2.0, 0.5]), "b": jnp.array([2.0])},
        {"w": jnp.array([-0.5, 0.2, 1.0, 0.4]), "b": jnp.array([1.0])},
        {"w": jnp.array([-0.1, 0.4, 0.3, 0.2]), "b": jnp.array([-3.0])},  # w keeps 2 of 4, b none
    ]
    tx = cautious(gradtx.adam(0.1))
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
        "eps_root": 0.0,
        "learning_rate": 0.1,
        "mask_eps": 1e-3,
    }
    update = jax.jit(tx.update)
    leaves = lambda tree: [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]  # noqa: E731
    ref = Cautious(R.ref_adam(0.1))
    ref.init(leaves(params))
    for g in grads[:2]:
        _, state = update(g, state, params)
        ref.update(leaves(g), leaves(params))
    state = gradtx.set_hyperparams(state, mask_eps=0.8, b1=0.5, learning_rate=0.3)
    got, state = update(grads[2], state, params)
    ref.mask_eps, R.find(ref.inner, R.Adam).b1 = 0.8, 0.5
    R.find(ref.inner, R.ScaleBySchedule).fn = lambda count: -0.3
    want = ref.update(leaves(grads[2]), leaves(params))
    assert ref.dropped > 0
    for g, w in zip(leaves(got), want):
        np.testing.assert_allclose(g, w, rtol=1e-5)
    assert gradtx.hyperparams(state)["mask_eps"] == 0.8
    # inside adamw the names stay unambiguous: Adam's eps is still "eps"
    state = gradtx.adamw(cautious=True).init(params)
    assert gradtx.hyperparams(gradtx.set_hyperparams(state, eps=1e-6, mask_eps=0.01))["eps"] == 1e-6


def test_construction_errors():
    with pytest.raises(ValueError, match=r"^mask_eps must be in \[0.0, 1.0\], got -0.1"):
        cautious(gradtx.adam(), mask_eps=-0.1)
    with pytest.raises(ValueError, match=r"^mask_eps must be in \[0.0, 1.0\], got 2"):
        cautious(gradtx.adam(), 2)
    with pytest.raises(TypeError, match="^mask_eps must be a number or an array"):
        cautious(gradtx.adam(), mask_eps=lambda t: 1e-3)
    with pytest.raises(ValueError, match=r"^b1 must be in \[0.0, 1.0\)"):
        gradtx.adamw(b1=1.0, cautious=True)
    with pytest.raises(TypeError, match="positional argument"):
        gradtx.lion(1e-4, 0.9, 0.99, None, 1e-3, None, True)  # cautious is keyword-only


def test_update_time_errors_and_extra_arguments():
    params = {"w": jnp.ones(3)}
    tx = cautious(gradtx.adam())
    state = tx.init(params)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones(2)}, state, params)
    with pytest.raises(TypeError, match="^cautious was given a state of type tuple, not the CautiousState"):
        tx.update(params, gradtx.adam().init(params), params)
    renaming = gradtx.stateless(lambda u, p: {"v": u["w"]})
    with pytest.raises(ValueError, match="^the updates of the transform cautious wraps do not match the gradients"):
        cautious(renaming).update(params, cautious(renaming).init(params))
    tx.update(params, state, None, value=1.0, grad=params, value_fn=None, obj_fn=None, grad_fn=None)


@pytest.mark.parametrize(
    "make",
    [lambda: gradtx.adamw(0.05, cautious=True), lambda: gradtx.lion(0.01, cautious=True)],
    ids=["c_adamw", "c_lion"],
)
def test_jit_equals_eager(make):
    tx = make()
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    R.check_jit_equals_eager(tx, params, R.jnp_trees(R.grad_trees(np.float32, 6)))


def test_bfloat16_empty_tree_and_none_leaf():
    R.check_bfloat16_empty_and_none(lambda: gradtx.adamw(0.01, cautious=True), "jit")
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    state = gradtx.adamw(cautious=True, mu_dtype=jnp.float32).init(params)
    assert state[0].inner_state.mu["w"].dtype == jnp.float32


def test_complex_entries_are_kept_when_the_phases_differ_by_less_than_90_degrees():
    g = jnp.array([1 + 1j, 1j, -1 - 0.1j, 2.0 - 0.5j], jnp.complex64)
    u = jnp.array([1.0, 1 + 1e-3j, 1j, -1e-30 + 0j], jnp.complex64)  # angles to g: 45, 89.9, 95.7, 166 degrees
    tx = cautious(gradtx.stateless(lambda updates, params: u), descent=False)
    got, _ = tx.update(g, tx.init(g))
    phi = np.real(np.asarray(u, np.complex128) * np.conj(np.asarray(g, np.complex128))) > 0
    assert phi.tolist() == [True, True, False, False]
    np.testing.assert_allclose(np.asarray(got), np.where(phi, np.asarray(u) / phi.mean(), 0), rtol=1e-6)
    assert got.dtype == jnp.complex64


def test_masked_entries_are_zero_even_where_the_update_is_not_finite():
    u = jnp.array([jnp.inf, -jnp.inf, 1.0, jnp.nan])
    tx = cautious(gradtx.stateless(lambda updates, params: u))
    got, _ = tx.update(jnp.array([1.0, 1.0, -1.0, 1.0]), tx.init(jnp.zeros(4)))
    np.testing.assert_array_equal(np.asarray(got), [0.0, -jnp.inf, 4.0 / 2, 0.0])


def test_convergence():
    # the ill-conditioned quadratic of helpers (curvatures 1 to 100), float32 on CPU, 200 steps
    # at rate 0.05 without decay: C-AdamW reduced the loss 5e16-fold, plain AdamW 1.2e9-fold
    _, plain, _ = run_problem(gradtx.adamw(0.05, weight_decay=0.0), "quadratic", 200)
    initial, final, _ = run_problem(gradtx.adamw(0.05, weight_decay=0.0, cautious=True), "quadratic", 200)
    assert np.isfinite(final) and initial / final >= 1e12 and final <= plain / 100, (initial, final, plain)
    # Rosenbrock from (-1.5, 2), 500 steps: 530-fold (AdamW: 110-fold)
    initial, final, _ = run_problem(gradtx.adamw(0.05, weight_decay=0.0, cautious=True), "rosenbrock", 500)
    assert np.isfinite(final) and initial / final >= 1e2, (initial, final)
    # C-Lion at the decaying rate 0.05 * 0.99^t on the quadratic, 200 steps: 1.2e6-fold (Lion: 6e5)
    lion = gradtx.lion(lambda t: 0.05 * 0.99**t, weight_decay=0.0, cautious=True)
    initial, final, _ = run_problem(lion, "quadratic", 200)
    assert np.isfinite(final) and initial / final >= 1e5, (initial, final)
