"""Adam-mini (Zhang et al. 2024) step by step against the NumPy reference of
``references/adam_mini.py``, written from the paper's Algorithm 1 and Section 2: one second moment per
block, the blocks given there as label arrays built from the paper's rules.

12 steps on a tiny transformer-shaped tree (embedding, query/key/value/out kernels with heads in
both of Flax's layouts, an MLP, a LayerNorm, biases, an lm head) and on the generic test tree,
in float32 and float64, jitted and eager.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.optimizers.adam import scale_by_adam
from gradtx.optimizers.adam_mini import ScaleByAdamMiniState, adam_mini, scale_by_adam_mini

import references as R
from helpers import run_problem
from references import adam_mini as M

DTYPES = ["float32", "float64"]
MODES = ["jit", "eager"]

# ------------------------------------------------------------------ a tiny transformer

SHAPES = {
    "embed": {"embedding": (11, 8)},
    "block": {
        "attn": {
            "query": {"kernel": (8, 2, 4), "bias": (2, 4)},  # Flax's DenseGeneral: (in, heads, head_dim)
            "key": {"kernel": (8, 8)},  # a Dense: (in, heads * head_dim)
            "value": {"kernel": (8, 2, 4)},
            "out": {"kernel": (2, 4, 8), "bias": (8,)},
        },
        "LayerNorm_0": {"scale": (8,), "bias": (8,)},
        "mlp": {"Dense_0": {"kernel": (8, 16), "bias": (16,)}, "Dense_1": {"kernel": (16, 8)}},
    },
    "lm_head": {"kernel": (8, 11)},
}

# the paper's blocks of each leaf, with num_heads = 2
LABELS = {
    "embed": {"embedding": M.token_rows},
    "block": {
        "attn": {
            "query": {"kernel": M.head_axis, "bias": M.whole},
            "key": {"kernel": lambda s: M.heads_along(s, 2)},
            "value": {"kernel": M.after_first},
            "out": {"kernel": M.last_axis, "bias": M.whole},
        },
        "LayerNorm_0": {"scale": M.whole, "bias": M.whole},
        "mlp": {"Dense_0": {"kernel": M.last_axis, "bias": M.whole}, "Dense_1": {"kernel": M.last_axis}},
    },
    "lm_head": {"kernel": M.last_axis},
}


def _shapes():
    return jax.tree.leaves(SHAPES, is_leaf=lambda x: isinstance(x, tuple))


def transformer_labels(params):
    return [make(p.shape) for make, p in zip(jax.tree.leaves(LABELS), params)]


def transformer_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    leaves = [np.asarray(rng.standard_normal(s) + 0.3, dtype) for s in _shapes()]
    return jax.tree.unflatten(jax.tree.structure(SHAPES, is_leaf=lambda x: isinstance(x, tuple)), leaves)


def transformer_grads(dtype, steps=R.STEPS, seed=1, zero_until=0):
    """Gradients whose scale differs by leaf, by step and along the axes (so that blocks differ)."""
    rng = np.random.default_rng(seed)
    treedef = jax.tree.structure(SHAPES, is_leaf=lambda x: isinstance(x, tuple))
    out = []
    for _ in range(steps):
        leaves = []
        for i, s in enumerate(_shapes()):
            ramp = np.exp(np.linspace(-1.0, 1.0, int(np.prod(s)))).reshape(s)
            leaves.append(
                np.asarray(
                    10.0 ** (i % 3 - 1) * np.exp(0.7 * rng.standard_normal()) * ramp * rng.standard_normal(s), dtype
                )
            )
        out.append(jax.tree.unflatten(treedef, leaves))
    return out


TRANSFORMER = (transformer_params, transformer_grads)
# the leaves the default weight-decay mask decays (all but the LayerNorm's), in flattening order
DECAYED = [not path.startswith("['block']['LayerNorm_0']") for path in R.leaf_paths(transformer_params(np.float32))]
assert DECAYED.count(False) == 2


def schedule(step):
    return 0.02 / (1 + 0.1 * step)


CASES = [
    ("default", dict(num_heads=2), dict()),
    (
        "custom",
        dict(learning_rate=schedule, b1=0.8, b2=0.95, eps=1e-3, weight_decay=0.1, num_heads=2),
        dict(mask=DECAYED),
    ),
    ("head_dim", dict(learning_rate=0.01, b2=0.5, head_dim=4), dict()),  # the key's runs of 4: the same 2 heads
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kwargs,ref_kwargs,mode",
    [pytest.param(k, r, m, id=f"{i}-{m}") for i, k, r in CASES for m in (MODES if i == "default" else ["jit"])],
)
def test_matches_reference_on_a_transformer(kwargs, ref_kwargs, dtype, mode):
    """Every case jitted, the default one eager too (test_jit_equals_eager holds the rest)."""
    names = ("learning_rate", "b1", "b2", "eps", "weight_decay")
    ref = M.ref_adam_mini(transformer_labels, **{k: v for k, v in kwargs.items() if k in names}, **ref_kwargs)
    R.run_against_reference(adam_mini(**kwargs), ref, dtype, mode, trees=TRANSFORMER)


def _generic_labels(params):
    """The default rules on the generic tree: 'dense/w' is an MLP kernel, the rest one block each."""
    return [M.whole(p.shape) for p in params[:4]] + [M.last_axis(params[4].shape)]


def _spanning(shape, axes):
    """Labels of blocks that span ``axes``: one block per index of the other axes."""
    index = np.indices(shape)
    kept = [index[a] for a in range(len(shape)) if a not in axes]
    sizes = [shape[a] for a in range(len(shape)) if a not in axes]
    return np.ravel_multi_index(kept, sizes) if kept else np.zeros(shape, np.int64)


GIVEN = {"dense": {"w": (0,), "b": ()}, "blocks": [(1, -1), ((), None)]}


def _given_labels(params):
    b0, b10, b11, db, dw = (p.shape for p in params)
    return [_spanning(b0, (1, 3)), M.entries(b10), M.whole(b11), M.entries(db), _spanning(dw, (0,))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kwargs,labels,mode",
    [
        pytest.param(dict(), _generic_labels, "jit", id="rules-jit"),
        pytest.param(dict(block_axes=GIVEN), _given_labels, "jit", id="block_axes_tree-jit"),
        pytest.param(dict(block_axes=lambda p: GIVEN), _given_labels, "eager", id="block_axes_fn-eager"),
    ],
)
def test_matches_reference_on_the_generic_tree(kwargs, labels, dtype, mode):
    tx = scale_by_adam_mini(b1=0.7, b2=0.9, **kwargs)
    R.run_against_reference(tx, M.AdamMini(labels, b1=0.7, b2=0.9), dtype, mode)


@pytest.mark.parametrize("mode", MODES)
def test_blocks_of_one_entry_are_adam_exactly(mode):
    params = jax.tree.map(jnp.asarray, R.param_tree(np.float32))
    mini, adam = scale_by_adam_mini(b1=0.8, b2=0.9, block_axes=()), scale_by_adam(b1=0.8, b2=0.9)
    s_mini, s_adam = mini.init(params), adam.init(params)
    wrap = jax.jit if mode == "jit" else (lambda f: f)
    update_mini, update_adam = wrap(mini.update), wrap(adam.update)
    for g in R.grad_trees(np.float32, 10, zero_until=2):
        g = jax.tree.map(jnp.asarray, g)
        u_mini, s_mini = update_mini(g, s_mini, params)
        u_adam, s_adam = update_adam(g, s_adam, params)
        for a, b in zip(
            jax.tree.leaves((u_mini, s_mini.mu, s_mini.nu)), jax.tree.leaves((u_adam, s_adam.mu, s_adam.nu))
        ):
            np.testing.assert_array_equal(a, b)


def test_first_step_divides_by_the_block_rms():
    # t = 1: m_hat = g and v_hat = mean over the block of g^2, so u = g / (rms_block(g) + eps)
    g = np.array([[3.0, 1.0, 0.0], [4.0, -1.0, 0.0]])
    tx = scale_by_adam_mini(b1=0.5, b2=0.5, eps=1e-30, block_axes=(0,))
    u, state = tx.update(jnp.asarray(g, jnp.float32), tx.init(jnp.zeros((2, 3))))
    np.testing.assert_allclose(u, [[3 / np.sqrt(12.5), 1.0, 0.0], [4 / np.sqrt(12.5), -1.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(state.nu, [[0.5 * 12.5, 0.5 * 1.0, 0.0]], rtol=1e-6)


def test_state_shapes_one_entry_per_block():
    params = transformer_params(np.float32)
    state = scale_by_adam_mini(num_heads=2).init(jax.tree.map(jnp.asarray, params))
    assert isinstance(state, ScaleByAdamMiniState) and state._fields == ("count", "mu", "nu", "hyperparams")
    nu = jax.tree.map(jnp.shape, state.nu)
    assert nu["embed"]["embedding"] == (11, 1)  # one per token
    assert nu["lm_head"]["kernel"] == (1, 11)  # one per token
    assert nu["block"]["attn"]["query"]["kernel"] == (1, 2, 1)  # one per head
    assert nu["block"]["attn"]["key"]["kernel"] == (1, 2, 1)  # (8, 8) seen as (8, 2 heads, 4)
    assert nu["block"]["attn"]["value"]["kernel"] == (1, 2, 4)  # one per output neuron
    assert nu["block"]["attn"]["out"]["kernel"] == (1, 1, 8)
    assert nu["block"]["mlp"]["Dense_0"]["kernel"] == (1, 16)
    assert nu["block"]["LayerNorm_0"]["scale"] == (1,) and nu["block"]["mlp"]["Dense_0"]["bias"] == (1,)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    n_nu = sum(v.size for v in jax.tree.leaves(state.nu))
    assert n_nu < 0.1 * n_params, (n_nu, n_params)
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(state.nu))


def test_name_patterns_need_a_word_boundary():
    params = {
        "dropout_mlp": {"kernel": jnp.ones((2, 3))},  # 'mlp' after '_': an MLP
        "router": {"kernel": jnp.ones((2, 3))},  # no 'out' here
        "monkey": {"kernel": jnp.ones((2, 3))},  # nor 'key'
        "Embed_0": {"embedding": jnp.ones((4, 3))},
    }
    nu = jax.tree.map(jnp.shape, scale_by_adam_mini().init(params).nu)
    assert nu == {
        "dropout_mlp": {"kernel": (1, 3)},
        "router": {"kernel": (1, 1)},
        "monkey": {"kernel": (1, 1)},
        "Embed_0": {"embedding": (4, 1)},
    }
    nu = jax.tree.map(jnp.shape, scale_by_adam_mini(mlp_names=("router",)).init(params).nu)
    assert nu["router"]["kernel"] == (1, 3) and nu["dropout_mlp"]["kernel"] == (1, 1)


def test_weight_decay_spares_norms_by_default():
    params = {"LayerNorm_0": {"scale": jnp.ones(2)}, "mlp": {"kernel": jnp.ones((2, 2))}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    tx = adam_mini(0.1, weight_decay=0.5)
    u, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_array_equal(u["LayerNorm_0"]["scale"], [0.0, 0.0])
    np.testing.assert_allclose(u["mlp"]["kernel"], -0.05 * np.ones((2, 2)), rtol=1e-6)
    tx = adam_mini(0.1, weight_decay=0.5, mask={"LayerNorm_0": {"scale": True}, "mlp": {"kernel": False}})
    u, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(u["LayerNorm_0"]["scale"], [-0.05, -0.05], rtol=1e-6)
    np.testing.assert_array_equal(u["mlp"]["kernel"], np.zeros((2, 2)))


def test_hyperparams_are_readable_and_settable():
    params = jax.tree.map(jnp.asarray, transformer_params(np.float32))
    grads = [jax.tree.map(jnp.asarray, g) for g in transformer_grads(np.float32, 3)]
    tx = adam_mini(0.1, num_heads=2)
    state = tx.init(params)
    assert gradtx.hyperparams(state) == {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "learning_rate": 0.1}
    update = jax.jit(tx.update)
    _, state = update(grads[0], state, params)
    _, state = update(grads[1], state, params)
    state = gradtx.set_hyperparams(state, b2=0.5, learning_rate=0.3)
    got, _ = update(grads[2], state, params)

    leaves = lambda tree: [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]  # noqa: E731
    ref = M.AdamMini(transformer_labels)
    ref.init(leaves(params))
    ref.update(leaves(grads[0]), leaves(params))
    ref.update(leaves(grads[1]), leaves(params))
    ref.b2 = 0.5
    want = [-0.3 * u for u in ref.update(leaves(grads[2]), leaves(params))]
    for g, w in zip(leaves(got), want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5 * np.max(np.abs(w)))


def test_construction_errors():
    with pytest.raises(ValueError, match=r"^b1 must be in \[0.0, 1.0\)"):
        adam_mini(b1=1.0)
    with pytest.raises(ValueError, match="^b2 must be in"):
        scale_by_adam_mini(b2=-0.1)
    with pytest.raises(ValueError, match="^eps must be in"):
        scale_by_adam_mini(eps=-1.0)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        adam_mini(-1.0)
    with pytest.raises(ValueError, match="^weight_decay must be in"):
        adam_mini(weight_decay=-0.1)
    with pytest.raises(ValueError, match="^num_heads must be a positive integer or None, got 0"):
        adam_mini(num_heads=0)
    with pytest.raises(ValueError, match="^head_dim must be a positive integer or None, got 2.5"):
        scale_by_adam_mini(head_dim=2.5)
    with pytest.raises(TypeError, match="^wqk_names must be a sequence of strings, got 'query'"):
        scale_by_adam_mini(wqk_names="query")
    with pytest.raises(TypeError, match="^norm_names must be a sequence of strings"):
        adam_mini(norm_names=None)
    with pytest.raises(TypeError, match="^b1 must be a number or an array"):
        scale_by_adam_mini(b1=lambda t: 0.9)


def test_partition_errors_name_the_leaf():
    with pytest.raises(
        ValueError,
        match=r"'attn/query/kernel' has shape \(8, 6\): its last axis \(6\) does not divide into num_heads=4 heads",
    ):
        scale_by_adam_mini(num_heads=4).init({"attn": {"query": {"kernel": jnp.ones((8, 6))}}})
    with pytest.raises(ValueError, match=r"does not divide into head_dim=4"):
        scale_by_adam_mini(head_dim=4).init({"k_proj": jnp.ones((8, 6))})
    with pytest.raises(
        ValueError, match=r"'key/kernel' of shape \(8, 8\) has its heads along one axis: give num_heads"
    ):
        scale_by_adam_mini().init({"key": {"kernel": jnp.ones((8, 8))}})
    with pytest.raises(ValueError, match=r"block_axes of 'w' are \(2,\), out of range for its shape \(2, 3\)"):
        scale_by_adam_mini(block_axes=(2,)).init({"w": jnp.ones((2, 3))})
    with pytest.raises(ValueError, match=r"block_axes of 'w' repeat an axis"):
        scale_by_adam_mini(block_axes=(0, -2)).init({"w": jnp.ones((2, 3))})
    with pytest.raises(TypeError, match=r"block_axes of 'w' must be a tuple of axes"):
        scale_by_adam_mini(block_axes={"w": "rows"}).init({"w": jnp.ones((2, 3))})
    with pytest.raises(ValueError, match="block_axes"):
        scale_by_adam_mini(block_axes={"v": ()}).init({"w": jnp.ones((2, 3))})


def test_update_time_errors_and_extra_arguments():
    params = {"w": jnp.ones(3)}
    tx = adam_mini()
    state = tx.init(params)
    with pytest.raises(ValueError, match="'w' has shape"):
        tx.update({"w": jnp.ones(2)}, state, params)
    tx.update(params, state, params, value=1.0, grad=params, value_fn=None, obj_fn=None, grad_fn=None)


def test_jit_equals_eager():
    tx = adam_mini(0.05, weight_decay=0.1, num_heads=2)
    params = jax.tree.map(jnp.asarray, transformer_params(np.float32))
    R.check_jit_equals_eager(tx, params, R.jnp_trees(transformer_grads(np.float32, 6)))


def test_dtypes_bfloat16_float16_and_empty():
    R.check_bfloat16(adam_mini(0.01), "jit", steps=4)
    R.check_empty_tree(adam_mini(), "jit")
    params = {"w": jnp.ones((2, 3), jnp.float16), "b": jnp.ones(3, jnp.bfloat16)}
    state = scale_by_adam_mini(mu_dtype=jnp.bfloat16, block_axes=(0,)).init(params)
    assert state.mu["w"].dtype == jnp.bfloat16 and state.nu["w"].dtype == jnp.float32  # float16 v: float32
    assert state.nu["b"].dtype == jnp.bfloat16
    u, _ = jax.jit(scale_by_adam_mini(block_axes=(0,)).update)(params, state)
    assert u["w"].dtype == jnp.float16 and u["b"].dtype == jnp.bfloat16
    empty = {"w": jnp.ones((0, 3))}  # an empty block: its mean square is 0, not NaN
    tx = scale_by_adam_mini(block_axes=(0,))
    _, state = tx.update(empty, tx.init(empty))
    np.testing.assert_array_equal(state.nu["w"], np.zeros((1, 3)))


def test_complex_parameters():
    z = jnp.array([[1 + 2j, -0.5j], [0.3, 2.0]], jnp.complex64)
    g = jnp.array([[0.3 - 1j, 2.0 + 0.5j], [0.1, -1j]], jnp.complex64)
    tx = scale_by_adam_mini(block_axes=(0,))
    u, state = tx.update(g, tx.init(z), z)
    assert u.dtype == jnp.complex64 and state.nu.dtype == jnp.float32
    rms = np.sqrt(np.mean(np.abs(np.asarray(g)) ** 2, axis=0, keepdims=True))
    np.testing.assert_allclose(u, np.asarray(g) / rms, rtol=1e-5)


def test_convergence():
    # softmax regression on the digits (64 -> 10), one block per output class: the loss, log(10) =
    # 2.30 at first, fell to 0.056 in 150 steps on CPU, float32
    initial, final, _ = run_problem(adam_mini(0.05, mlp_names=("w",)), "digits", 150)
    assert np.isfinite(final) and final < 0.1, (initial, final)
