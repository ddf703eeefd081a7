"""The linear assignment problem, as in ``optax.assignment``.

Given an :math:`n \\times m` cost matrix :math:`C`, find :math:`k = \\min(n, m)` pairs
:math:`(i_t, j_t)`, no row and no column used twice, that minimise :math:`\\sum_t C_{i_t j_t}`:
every row is assigned when :math:`n \\le m`, every column when :math:`n \\ge m`. Two solvers,
both written with ``lax.while_loop`` / ``lax.fori_loop`` so that they run under ``jax.jit`` and
``jax.vmap``: :func:`hungarian_algorithm`, by shortest augmenting paths over dual potentials
(:math:`O(k^2 \\max(n, m))`), and :func:`base_hungarian_algorithm`, Munkres' original steps of
starred and primed zeros on a square matrix padded with zeros.

Both return the pairs ordered by increasing row index ``i``. When several assignments are
optimal, which one comes back is not specified (and may differ between the two).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["base_hungarian_algorithm", "hungarian_algorithm"]


def _checked(name: str, cost_matrix: jax.Array) -> jax.Array:
    cost = jnp.asarray(cost_matrix)
    if cost.ndim != 2:
        raise ValueError(f"{name}: cost_matrix must be a 2-D array, got shape {tuple(cost.shape)}")
    if jnp.issubdtype(cost.dtype, jnp.complexfloating):
        raise ValueError(f"{name}: cost_matrix must be real, got dtype {cost.dtype}")
    if not jnp.issubdtype(cost.dtype, jnp.floating):
        cost = cost.astype(jnp.result_type(float))
    return cost


def _empty() -> tuple[jax.Array, jax.Array]:
    none = jnp.zeros((0,), jnp.int32)
    return none, none


# ------------------------------------------------------ shortest augmenting paths


def _augmenting_paths(cost: jax.Array) -> jax.Array:
    """The column of each row of an optimal assignment of ``cost``, ``n <= m``: rows are added
    one at a time, each by the shortest augmenting path in the reduced costs
    ``cost[i, j] - u[i] - v[j]`` (Dijkstra's search), after which the potentials are updated
    so that the reduced costs stay nonnegative and zero on the assigned pairs."""
    n, m = cost.shape
    source = m  # a virtual column holding the row being added; its path ends there
    inf = jnp.array(jnp.inf, cost.dtype)

    def add_row(row, carry):
        u, v, row_of = carry  # row_of[j]: the row assigned to column j, -1 if none
        row_of = row_of.at[source].set(row)

        def search_step(state):
            u, v, dist, came_from, used, col, steps = state
            used = used.at[col].set(True)
            r = row_of[col]
            reduced = cost[r] - u[r] - v[:m]
            closer = ~used[:m] & (reduced < dist[:m])
            dist = dist.at[:m].set(jnp.where(closer, reduced, dist[:m]))
            came_from = came_from.at[:m].set(jnp.where(closer, col, came_from[:m]))
            candidates = jnp.where(used, inf, dist)
            nearest = jnp.argmin(candidates)
            delta = candidates[nearest]
            # the rows on the tree (those of the used columns) and the used columns move by delta
            u = u.at[jnp.where(used, row_of, n)].add(delta, mode="drop")
            v = jnp.where(used, v - delta, v)
            dist = jnp.where(used, dist, dist - delta)
            return u, v, dist, came_from, used, nearest, steps + 1

        def searching(state):
            col, steps = state[5], state[6]
            return (row_of[col] >= 0) & (steps <= m)

        start = (
            u,
            v,
            jnp.full((m + 1,), inf),
            jnp.full((m + 1,), source),
            jnp.zeros((m + 1,), bool),
            jnp.asarray(source),
            jnp.asarray(0),
        )
        u, v, _, came_from, _, free_col, _ = lax.while_loop(searching, search_step, start)

        def shift(state):  # walk the path back to the source, moving each row one column along
            col, row_of, steps = state
            before = came_from[col]
            return before, row_of.at[col].set(row_of[before]), steps + 1

        _, row_of, _ = lax.while_loop(
            lambda s: (s[0] != source) & (s[2] <= m), shift, (free_col, row_of, jnp.asarray(0))
        )
        return u, v, row_of

    start = (jnp.zeros((n,), cost.dtype), jnp.zeros((m + 1,), cost.dtype), jnp.full((m + 1,), -1))
    _, _, row_of = lax.fori_loop(0, n, add_row, start)
    assigned = row_of[:m]
    return jnp.zeros((n,), jnp.int32).at[jnp.where(assigned >= 0, assigned, n)].set(jnp.arange(m), mode="drop")


def hungarian_algorithm(cost_matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""An assignment of rows to columns of least total cost.

    .. math::
        \min_{(i, j)} \sum_{t=1}^{k} C_{i_t j_t}, \qquad k = \min(n, m),\ i, j \text{ without repeats}

    The Hungarian method (Kuhn, 1955, :doi:`10.1002/nav.3800020109`; Munkres, 1957,
    :doi:`10.1137/0105003`) in its shortest-augmenting-path form: with dual potentials
    :math:`u_i + v_j \le C_{ij}`, equal on the assigned pairs, each row is added by the
    cheapest path of alternately free and assigned pairs in the reduced costs
    :math:`C_{ij} - u_i - v_j`, then the potentials move so that the reduced costs stay
    nonnegative. A tall matrix is solved as its transpose. Runs under ``jax.jit`` and
    ``jax.vmap``.

    Args:
        cost_matrix: :math:`C`, a 2-D array of real costs (integers are solved as floats).
            Entries must be finite, or :math:`+\infty` for pairs that must not be used as long
            as an assignment of finite cost exists.

    Returns:
        ``(i, j)``, two int32 vectors of length :math:`\min(n, m)`, ``i`` increasing: row
        ``i[t]`` is assigned to column ``j[t]``, and ``cost_matrix[i, j].sum()`` is the least
        total cost.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import assignment
        >>> cost = jnp.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0]])
        >>> i, j = assignment.hungarian_algorithm(cost)
        >>> i.tolist(), j.tolist(), float(cost[i, j].sum())
        ([0, 1], [1, 0], 3.0)
    """
    cost = _checked("hungarian_algorithm", cost_matrix)
    n, m = cost.shape
    if n == 0 or m == 0:
        return _empty()
    if n <= m:
        return jnp.arange(n, dtype=jnp.int32), _augmenting_paths(cost)
    rows = _augmenting_paths(cost.T)  # the row of each column
    order = jnp.argsort(rows)
    return rows[order], jnp.arange(m, dtype=jnp.int32)[order]


# ------------------------------------------------------ Munkres' starred and primed zeros


def _munkres(cost: jax.Array) -> jax.Array:
    """The column of each row of an optimal assignment of a square ``cost``, by Munkres' steps:
    reduce rows and columns; then repeatedly prime an uncovered zero: a row with a starred zero
    is covered (and the star's column uncovered), a row without one ends an augmenting path of
    alternating primes and stars, whose primes become the stars; with no uncovered zero, the
    least uncovered entry is subtracted from the uncovered columns and added to the covered
    rows. Done when every row has a star."""
    s = cost.shape[0]
    cost = cost - cost.min(axis=1, keepdims=True)
    cost = cost - cost.min(axis=0, keepdims=True)
    big = jnp.array(jnp.inf, cost.dtype)
    none = jnp.full((s,), -1)

    def augment(star_col, star_row, prime_col, row, col):
        def flip(state):  # star the primed (row, col); the star of col, if any, continues the path
            row, col, star_col, star_row = state
            next_row = star_row[col]
            star_col, star_row = star_col.at[row].set(col), star_row.at[col].set(row)
            next_col = jnp.where(next_row >= 0, prime_col[next_row], -1)
            return next_row, next_col, star_col, star_row

        _, _, star_col, star_row = lax.while_loop(lambda t: t[1] >= 0, flip, (row, col, star_col, star_row))
        return star_col, star_row

    def step(state):
        cost, star_col, star_row, prime_col, row_cover, count = state
        # the columns of the stars are covered, but for those whose row a prime has covered
        col_cover = (star_row >= 0) & ~row_cover[jnp.maximum(star_row, 0)]
        uncovered = ~row_cover[:, None] & ~col_cover[None, :]
        zeros = uncovered & (cost == 0)
        found = zeros.any()
        row, col = jnp.divmod(jnp.argmax(zeros.ravel()), s)
        has_star = star_col[row] >= 0
        # prime the zero: its row is covered when it holds a star, else the path is augmented
        cover = found & has_star
        path = found & ~has_star
        prime_col = jnp.where(found, prime_col.at[row].set(col), prime_col)
        row_cover = jnp.where(cover, row_cover.at[row].set(True), row_cover)
        star_col, star_row = augment(star_col, star_row, prime_col, row, jnp.where(path, col, -1))
        prime_col = jnp.where(path, none, prime_col)
        row_cover = jnp.where(path, jnp.zeros_like(row_cover), row_cover)
        # no uncovered zero: make one
        delta = jnp.where(found, 0, jnp.where(uncovered, cost, big).min())
        adjusted = cost + delta * row_cover[:, None] - delta * ~col_cover[None, :]
        return adjusted, star_col, star_row, prime_col, row_cover, count + 1

    def unfinished(state):
        star_col, count = state[1], state[5]
        # each augmentation takes at most 2 s + 1 steps; the bound only stops a NaN input looping
        return (star_col < 0).any() & (count < s * (2 * s + 2))

    start = (cost, none, none, none, jnp.zeros((s,), bool), jnp.asarray(0))
    return lax.while_loop(unfinished, step, start)[1]


def base_hungarian_algorithm(cost_matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""An assignment of rows to columns of least total cost, by Munkres' original steps.

    .. math::
        \min_{(i, j)} \sum_{t=1}^{k} C_{i_t j_t}, \qquad k = \min(n, m),\ i, j \text{ without repeats}

    The same problem and result as :func:`hungarian_algorithm`, solved the plainer way of
    Munkres, 1957 (:doi:`10.1137/0105003`), after Kuhn, 1955 (:doi:`10.1002/nav.3800020109`):
    the matrix is padded with zeros to a square, its rows and columns reduced to a minimum of 0,
    and independent zeros are starred, primed and exchanged along alternating paths, the least
    uncovered entry moving the zeros when none is free, until every row has a starred zero.
    Slower than :func:`hungarian_algorithm` on large or very rectangular matrices. Runs under
    ``jax.jit`` and ``jax.vmap``.

    Args:
        cost_matrix: :math:`C`, a 2-D array of real costs (integers are solved as floats).
            Entries must be finite, or :math:`+\infty` for pairs that must not be used as long
            as an assignment of finite cost exists.

    Returns:
        ``(i, j)``, two int32 vectors of length :math:`\min(n, m)`, ``i`` increasing.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import assignment
        >>> cost = jnp.array([[4.0, 1.0], [2.0, 0.0], [3.0, 5.0]])
        >>> i, j = assignment.base_hungarian_algorithm(cost)
        >>> i.tolist(), j.tolist(), float(cost[i, j].sum())
        ([1, 2], [1, 0], 3.0)
    """
    cost = _checked("base_hungarian_algorithm", cost_matrix)
    n, m = cost.shape
    k, s = min(n, m), max(n, m)
    if k == 0:
        return _empty()
    square = jnp.zeros((s, s), cost.dtype).at[:n, :m].set(cost)
    cols = _munkres(square)[:n]
    rows = jnp.nonzero(cols < m, size=k)[0].astype(jnp.int32)
    return rows, cols[rows].astype(jnp.int32)
