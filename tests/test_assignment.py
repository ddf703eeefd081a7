"""gradtx.assignment against brute force over every assignment.

Both solvers, under jax.jit, on random matrices: square of sizes 1 to 6, 3 x 5 and 5 x 3 (and a
few more rectangles), with continuous costs, small integer costs (many ties, also as an integer
array), constant matrices and repeated rows; forbidden (+inf) pairs; under jax.vmap; empty
matrices; and the error for a cost matrix that is not 2-D. An answer is right when it has
min(n, m) pairs, rows increasing, no row or column twice, and a total cost equal to the least
total cost found by enumerating every injective map of the shorter axis into the longer one.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx import assignment

SOLVERS = {
    "hungarian_algorithm": assignment.hungarian_algorithm,
    "base_hungarian_algorithm": assignment.base_hungarian_algorithm,
}
SHAPES = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (3, 5), (5, 3), (1, 4), (4, 1), (2, 6), (6, 2)]


def least_cost(cost: np.ndarray) -> float:
    """The least total cost of an assignment, by enumeration, in float64."""
    cost = np.asarray(cost, np.float64)
    if cost.shape[0] > cost.shape[1]:
        cost = cost.T
    n, m = cost.shape
    maps = np.array(list(itertools.permutations(range(m), n)))  # row r -> column maps[:, r]
    return float(cost[np.arange(n), maps].sum(axis=1).min())


def check(cost: np.ndarray, rows, cols) -> None:
    rows, cols = np.asarray(rows), np.asarray(cols)
    n, m = cost.shape
    k = min(n, m)
    assert rows.shape == cols.shape == (k,)
    assert rows.dtype == cols.dtype == np.int32
    assert np.all(np.diff(rows) > 0), rows  # increasing, so no row twice
    assert len(set(cols.tolist())) == k, cols
    assert rows.min() >= 0 and rows.max() < n and cols.min() >= 0 and cols.max() < m
    # the shorter axis is assigned in full
    if n <= m:
        assert rows.tolist() == list(range(n))
    if n >= m:
        assert sorted(cols.tolist()) == list(range(m))
    want = least_cost(cost)
    got = float(np.asarray(cost, np.float64)[rows, cols].sum())
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5), (cost, rows, cols)


def matrices(shape, seed):
    """Random costs of several kinds, all float32."""
    rng = np.random.default_rng(seed)
    kinds = [rng.normal(size=shape) for _ in range(6)]
    kinds += [rng.integers(0, 3, size=shape) for _ in range(6)]  # small integers: ties everywhere
    kinds += [np.full(shape, 2.0), np.tile(rng.normal(size=(1, shape[1])), (shape[0], 1))]  # all tied
    kinds += [rng.exponential(size=shape) * 1e3, rng.normal(size=shape) * 1e-3]
    return [np.asarray(c, np.float32) for c in kinds]


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{m}" for n, m in SHAPES])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_optimal_under_jit(name, shape):
    solve = jax.jit(SOLVERS[name])
    for cost in matrices(shape, seed=shape[0] * 10 + shape[1]):
        check(cost, *solve(jnp.asarray(cost)))


@pytest.mark.parametrize("name", list(SOLVERS))
def test_integer_cost_matrices(name):
    rng, solve = np.random.default_rng(1), jax.jit(SOLVERS[name])
    for shape in [(4, 4), (3, 5), (5, 3)]:
        for _ in range(5):
            cost = rng.integers(-5, 20, size=shape).astype(np.int32)
            rows, cols = solve(jnp.asarray(cost))
            check(cost, rows, cols)
            assert int(cost[np.asarray(rows), np.asarray(cols)].sum()) == least_cost(cost)  # exactly


@pytest.mark.parametrize("name", list(SOLVERS))
def test_eager_equals_jit(name):
    cost = jnp.asarray(np.random.default_rng(2).normal(size=(4, 6)), jnp.float32)
    eager, jitted = SOLVERS[name](cost), jax.jit(SOLVERS[name])(cost)
    check(np.asarray(cost), *eager)
    assert all(np.array_equal(a, b) for a, b in zip(eager, jitted))


@pytest.mark.parametrize("name", list(SOLVERS))
def test_forbidden_pairs(name):
    # +inf marks pairs that must not be used; each matrix still has an assignment of finite cost
    rng, solve, tried = np.random.default_rng(3), jax.jit(SOLVERS[name]), 0
    for shape in [(2, 2), (4, 4), (3, 5), (5, 3)]:
        for _ in range(5):
            cost = rng.normal(size=shape).astype(np.float32)
            cost[rng.random(size=shape) < 0.4] = np.inf
            if not np.isfinite(least_cost(cost)):
                continue
            rows, cols = solve(jnp.asarray(cost))
            check(cost, rows, cols)
            assert np.all(np.isfinite(cost[np.asarray(rows), np.asarray(cols)]))
            tried += 1
    assert tried >= 10  # most of the 20 draws have a finite assignment


@pytest.mark.parametrize("name", list(SOLVERS))
def test_under_vmap(name):
    batch = np.random.default_rng(4).normal(size=(6, 4, 5)).astype(np.float32)
    rows, cols = jax.jit(jax.vmap(SOLVERS[name]))(jnp.asarray(batch))
    assert rows.shape == cols.shape == (6, 4)
    for cost, r, c in zip(batch, rows, cols):
        check(cost, r, c)


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (3, 0)])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_empty(name, shape):
    rows, cols = SOLVERS[name](jnp.zeros(shape))
    assert rows.shape == cols.shape == (0,)


@pytest.mark.parametrize("shape", [(3,), (), (2, 2, 2)])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_cost_matrix_must_be_2d(name, shape):
    with pytest.raises(ValueError, match=rf"^{name}: cost_matrix must be a 2-D array, got shape"):
        SOLVERS[name](jnp.zeros(shape))
