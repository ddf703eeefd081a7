"""What one NaN or +Inf gradient does to each optimizer, as docs/faults.md states it.

For every optimizer of ``helpers.OPTIMIZERS`` the experiment of docs/faults.md is
run again and its outcome compared with the page's table; a registered optimizer
without a row (or a row without an optimizer) fails. ``python tests/suites/test_faults.py``
prints the table the page should have.

Also here: ``apply_if_finite`` leaves the parameters and the inner state of every
optimizer exactly as they were on a NaN step, and ``chain(zero_nans(), opt)`` keeps
every optimizer finite through one (tests/transforms/test_wrappers.py checks the exact
containment of both for single optimizers against hand-built runs).
"""

import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

if __name__ == "__main__":  # run as a script, outside pytest (which puts tests/ on sys.path)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers import OPTIMIZERS, quadratic, step  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = os.path.join(ROOT, "docs", "faults.md")

# The bad gradient hits w[0]; that parameter is negative, so a +Inf gradient points
# uphill and an optimizer stuck on it moves away from the minimum.
PARAMS = {"w": jnp.array([-1.0, 2.0, 0.5]), "b": jnp.array([0.3, -0.7])}
LATER_STEPS = 100
PROBE = 1e3  # large enough to flip the sign of any healthy momentum, so sign methods respond
BAD = {"NaN": float("nan"), "+Inf": float("inf")}


def _spread(tree):
    """Which entries of ``tree`` are not finite: none, the entry w[0], its leaf w, or all."""
    bad = {k: ~np.isfinite(np.asarray(v)) for k, v in tree.items()}
    if not any(b.any() for b in bad.values()):
        return "none"
    if all(b.all() for b in bad.values()):
        return "all"
    if not bad["b"].any():
        if bad["w"].all():
            return "leaf"
        if bad["w"][0] and bad["w"].sum() == 1:
            return "entry"
    return "mixed"


def _state_finite(state):
    leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    return all(np.isfinite(x).all() for x in leaves if np.issubdtype(x.dtype, np.inexact))


def outcome(tx, update, bad):
    """``(parameters, later)`` for one optimizer and one bad value, as docs/faults.md words them.

    ``update`` is ``tx``'s jitted step. A clean step, then a step whose gradient
    (and ``grad`` extra argument) has ``bad`` at w[0]; ``parameters`` says which
    parameters that step leaves not finite. Then the parameters from before the
    bad step are put back, the state is kept, and ``LATER_STEPS`` clean steps
    follow; ``later`` says how the state carries the fault.
    """
    state = tx.init(PARAMS)
    updates, state = update(PARAMS, state, PARAMS)
    params = gradtx.apply_updates(PARAMS, updates)
    bad_grads = {**params, "w": params["w"].at[0].set(bad)}
    updates, state = update(bad_grads, state, params)
    parameters = _spread(gradtx.apply_updates(params, updates))

    not_finite = "none"
    for _ in range(LATER_STEPS):
        updates, state = update(params, state, params)
        if _spread(updates) != "none":
            not_finite = _spread(updates)
        params = gradtx.apply_updates(params, updates)
    if not_finite != "none":
        return parameters, f"NaN {not_finite}"
    if _state_finite(state):
        return parameters, "recovers"
    # Finite updates from a state that keeps a NaN or Inf. Probe it with gradients of
    # +-PROBE everywhere: an entry whose update is the same for both ignores its gradient.
    plus, minus = (
        update(jax.tree.map(lambda p: sign * PROBE * jnp.ones_like(p), params), state, params)[0]  # noqa: B023 (used at once)
        for sign in (1.0, -1.0)
    )
    ignored = {k: np.asarray(plus[k]) == np.asarray(minus[k]) for k in PARAMS}
    where = _spread({k: np.where(v, np.nan, 0.0) for k, v in ignored.items()})
    if where in ("none", "mixed"):
        return parameters, "mixed"
    still = all(np.all(np.abs(np.asarray(plus[k])[ignored[k]]) < 1e-6) for k in PARAMS)
    return parameters, f"{'frozen' if still else 'stuck'} {where}"


def table_rows():
    """The table of docs/faults.md: optimizer name -> its four cells."""
    with open(PAGE, encoding="utf-8") as f:
        text = f.read()
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `(\w+)` \|(.*)\|\s*$", line)
        if match:
            cells = tuple(c.strip() for c in match.group(2).split("|"))
            assert match.group(1) not in rows, f"docs/faults.md has two rows for {match.group(1)}"
            rows[match.group(1)] = cells
    return rows


def measured_row(name):
    tx = OPTIMIZERS[name]()
    update = jax.jit(lambda g, s, p: step(tx, g, s, p))
    return tuple(cell for bad in BAD.values() for cell in outcome(tx, update, bad))


def test_every_registered_optimizer_has_a_row():
    rows = table_rows()
    assert sorted(rows) == sorted(OPTIMIZERS), (
        f"docs/faults.md rows without an optimizer: {sorted(set(rows) - set(OPTIMIZERS))}; "
        f"optimizers without a row: {sorted(set(OPTIMIZERS) - set(rows))} (python tests/suites/test_faults.py prints the table)"
    )


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_table_states_what_a_bad_gradient_does(name):
    row = table_rows().get(name)
    assert row is not None, f"docs/faults.md has no row for {name}"
    assert measured_row(name) == row, f"docs/faults.md says {row} for {name}"


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_apply_if_finite_leaves_params_and_inner_state_unchanged_on_a_nan_step(name):
    tx = gradtx.apply_if_finite(OPTIMIZERS[name](), max_consecutive_errors=2)
    update = jax.jit(lambda g, s, p: step(tx, g, s, p))
    state = tx.init(PARAMS)
    updates, state = update(PARAMS, state, PARAMS)
    params = gradtx.apply_updates(PARAMS, updates)
    for bad in BAD.values():
        bad_grads = {**params, "w": params["w"].at[0].set(bad)}
        updates, new_state = update(bad_grads, state, params)
        jax.tree.map(np.testing.assert_array_equal, gradtx.apply_updates(params, updates), params)
        jax.tree.map(np.testing.assert_array_equal, new_state.inner_state, state.inner_state)
        assert int(new_state.notfinite_count) == 1 and not bool(new_state.last_finite)
    updates, state = update(params, new_state, params)  # and the next clean step is taken
    assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 1
    assert _spread(gradtx.apply_updates(params, updates)) == "none"


def _without_nans(tree):
    return jax.tree.map(lambda x: jnp.where(jnp.isnan(x), 0, x), tree)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_zero_nans_keeps_every_optimizer_finite_through_a_nan_step(name):
    # zero_nans cleans the updates only: the gradient given as the extra argument
    # `grad` (read by line searches) is cleaned here by hand, as docs/faults.md says
    tx = gradtx.chain(gradtx.zero_nans(), OPTIMIZERS[name]())
    update = jax.jit(
        lambda g, s, p: tx.update(
            g, s, p, value=quadratic(p), grad=_without_nans(g), value_fn=quadratic, obj_fn=quadratic
        )
    )
    state = tx.init(PARAMS)
    params = PARAMS
    for i in range(4):
        grads = {**params, "w": params["w"].at[0].set(jnp.nan)} if i == 1 else params
        updates, state = update(grads, state, params)
        params = gradtx.apply_updates(params, updates)
        assert _spread(params) == "none", f"step {i}: {params}"
        assert _state_finite(state[1]), f"step {i}"
        assert bool(state[0].found_nan["w"]) == (i == 1)  # the flag is for the latest step only


def test_zero_nans_does_not_clean_the_grad_extra_argument():
    tx = gradtx.chain(gradtx.zero_nans(), gradtx.lbfgs())
    state = tx.init(PARAMS)
    grads = {**PARAMS, "w": PARAMS["w"].at[0].set(jnp.nan)}
    _, state = step(tx, grads, state, PARAMS)  # step() passes the raw gradient as `grad`
    assert not _state_finite(state[1])


if __name__ == "__main__":
    print("| Optimizer | NaN: parameters | NaN: later | +Inf: parameters | +Inf: later |")
    print("| --- | --- | --- | --- | --- |")
    for optimizer in OPTIMIZERS:
        print(f"| `{optimizer}` | " + " | ".join(measured_row(optimizer)) + " |")
