"""The multi-device checks of tests/suites/test_distributed.py, run in a subprocess with 8 CPU devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/suites/distributed_worker.py CHECK...

CHECK is one of ``pmap``, ``sharded``, ``shard_map``, ``zero1``, ``memory``. Each prints one
line ``RESULT {json}`` with ``failures`` (a list of sentences; empty when the
check passed) and the numbers the test reports: every numeric result is
compared with the single-device run of the same optimizer, and ``max_diff``
holds the largest absolute difference seen.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for helpers

import gradtx  # noqa: E402
from gradtx import distributed  # noqa: E402

from helpers import OPTIMIZERS, REPRESENTATIVE  # noqa: E402

N_DEVICES = 8

# The optimizers checked by default are helpers.REPRESENTATIVE (the ZeRO-1 check adds centred
# RMSProp); ``--all`` checks every optimizer of helpers.OPTIMIZERS.
SELECTED = {name: OPTIMIZERS[name] for name in REPRESENTATIVE if name in OPTIMIZERS}
TOLERANCE = 1e-5  # every multi-device leaf is within this of the single-device one, relative to max(1, |leaf|)
# Optimizers allowed a looser tolerance, with the reason.
LOOSER = {
    # its denominator is the centred second moment of the step before, which is near 0 while the
    # gradient barely changes: it magnifies the different rounding of the reductions across devices
    "acprop": 1e-4,
    # its denominator is the Hutchinson estimate |z (H z)|, a sum of terms of order 1 that nearly cancel
    # on some coordinates (down to 4e-4 on the MLP): their rounding, which differs with the order of the
    # reductions, is magnified as much (a permuted batch on one device moves it 2e-4; with eps = 1: 1e-6)
    "adahessian": 1e-3,
    # SOAP's bases differ between layouts by up to 1e-2 (LOOSE_LEAVES below), and the next steps rotate
    # by them: in the all-optimizer run its parameters differ by 1.9e-5 of the leaf's scale on the 2-d
    # Auto layout after three steps (1.3e-6 when run alone)
    "soap": 1e-4,
    # Shampoo's roots (L + 1e-6 lambda_max I)^(-1/p) of statistics built from a few rank-one updates
    # magnify the null-space directions, where the reductions' rounding lives, by up to 1e6^(1/p), and
    # the float32 Newton iteration stops at a step the rounding decides: on one device a 1e-7 relative
    # change of the gradients moves the parameters by 4e-4 in four steps (7e-3 here on the 2-d layout)
    "shampoo": 2e-2,
}

# Optimizers whose gradients get Gaussian noise (variance 1e-2, the same on every layout) in the pmap
# and sharded checks, with the reason. SOAP's first update moves nothing, so on the surrogate loss
# (and the MLP's "odd" penalty), which do not depend on the batch, its second gradient repeats the
# first: rotated into the eigenbases of the first's G G^T and G^T G it is diagonal up to rounding,
# and Adam's elementwise normalisation turns that rounding (1e-7 |G| > eps) into steps of order 1,
# as different as the reductions' rounding (1.3 relative on the 2-d layout). The noise makes the
# second gradient differ from the first, as in training; the tolerance stays TOLERANCE.
PERTURBED = {"soap"}
# State leaves judged with their own tolerance (the leaves whose path contains the marker), with the
# reason; every other leaf, the parameters included, stays within TOLERANCE (or LOOSER).
LOOSE_LEAVES = {
    # SOAP's bases: eigenvectors move with the rounding by eps * lambda_max / (the gap to the next
    # eigenvalue), and the refresh's QR of L Q (a stale basis; L rank deficient on these small
    # batches) orthogonalises nearly dependent columns: 6.5e-3 here on the 2-d layout, 3.6e-4 under
    # pmap, while the parameters agree to 1.3e-6
    "soap": (".Q[", 1e-2),
}

# ---------------------------------------------------------------- shared helpers


def progress(*what):
    """One line on stderr per step of a check: where a hang or a crash happened."""
    print(f"[{time.strftime('%H:%M:%S')}]", *what, file=sys.stderr, flush=True)


def max_diff(a, b) -> float:
    """The largest absolute difference between two trees of the same structure (keys skipped)."""
    return _diffs(a, b)[0]


def _diffs(a, b) -> tuple[float, float]:
    """The largest absolute difference, and the largest with each leaf's divided by ``max(1, max |b|)``.

    States hold leaves of very different magnitudes (L-BFGS keeps ``1 / s^T y``);
    float32 agreement is judged relative to each leaf's own scale.
    """
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb), (len(la), len(lb))
    worst = scaled = 0.0
    for x, y in zip(la, lb):
        if jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key):
            continue
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.size:
            d = float(np.max(np.abs(x - y)))
            worst = max(worst, d)
            scaled = max(scaled, d / max(1.0, float(np.max(np.abs(y)))))
    return worst, scaled


SCALED: dict[str, float] = {}  # the scaled differences of the running check, reported as "scaled_diff"


def _compare(name, reference, got, diffs, failures, what="one device"):
    """Record the largest absolute difference; fail when the scaled one exceeds TOLERANCE."""
    worst, scaled = _diffs(reference, got)
    diffs[name] = worst
    key = re.sub(r" \(device \d+\)$", "", name)
    SCALED[key] = max(SCALED.get(key, 0.0), scaled)
    if key.split(" [")[0] in LOOSE_LEAVES:
        marker, loose = LOOSE_LEAVES[key.split(" [")[0]]
        parts = [_split_leaves(tree, marker) for tree in (reference, got)]
        (worst, scaled), marked = _diffs(parts[0][0], parts[1][0]), _diffs(parts[0][1], parts[1][1])[1]
        if not marked <= loose:
            failures.append(
                f"{name}: its leaves '{marker}' differ from {what} by {marked:.3g} (relative), over {loose}"
            )
    if not scaled <= LOOSER.get(key.split(" [")[0], TOLERANCE):
        failures.append(f"{name}: differs from {what} by {worst:.3g} ({scaled:.3g} relative to the leaf's scale)")


def _split_leaves(tree, marker: str) -> tuple[list, list]:
    """The leaves of ``tree`` whose path does not contain ``marker``, and those whose path does."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return (
        [x for p, x in flat if marker not in jax.tree_util.keystr(p)],
        [x for p, x in flat if marker in jax.tree_util.keystr(p)],
    )


def extra_args(loss, grads, value_fn, step):
    """Every extra argument a gradtx transform may ask for; each ignores those it does not use."""
    return dict(
        value=loss,
        grad=grads,
        value_fn=value_fn,
        obj_fn=value_fn,
        grad_fn=lambda p, i: jax.grad(value_fn)(p),
        key=jax.random.key(step),
    )


def collectives(hlo: str, with_scope: bool = False) -> list[tuple]:
    """Every collective in a compiled HLO module, with the number of elements it produces.

    With ``with_scope``, also the ``i`` of the ``transform{i}`` named scope in its op_name (or None).
    """
    found = []
    for line in hlo.splitlines():
        m = re.search(
            r"=\s+(.*?)\s+(all-gather|all-reduce|all-to-all|ragged-all-to-all|collective-permute"
            r"|collective-broadcast|reduce-scatter)(-start)?\(",
            line,
        )
        if m:
            shapes = re.findall(r"[a-z]+[0-9]*\[([0-9,]*)\]", m.group(1))
            elements = max((math.prod(int(d) for d in s.split(",") if d) for s in shapes), default=1)
            if with_scope:
                scope = re.search(r'op_name="[^"]*transform(\d+)/', line)
                found.append((m.group(2), elements, int(scope.group(1)) if scope else None))
            else:
                found.append((m.group(2), elements))
    return found


STATISTIC_LIMIT = 64  # an all-reduce of at most this many elements is a statistic, not a tensor
ELEMENTWISE = {"sgd", "sgd_momentum", "sgd_nesterov", "adam", "adamw", "rmsprop"}  # no collective at all
# Optimizers whose update needs each matrix whole (Newton-Schulz's products, GaLore's SVD): on a
# matrix split across devices they gather it, and that is allowed.
WHOLE_MATRIX = {"muon", "normuon", "galore", "soap"}  # soap: G G^T and its eigenbasis, per axis
WHOLE_MATRIX |= {"shampoo"}  # shampoo: G G^T per axis of each block, and its inverse root
# Optimizers whose state is not all shaped like the parameters: on an Auto mesh XLA chooses the layout
# of the rest (GaLore's projectors and projected moments), which may change at the first update.
FREE_LAYOUT = {"galore", "soap"}  # soap: its statistics and eigenbases
FREE_LAYOUT |= {"shampoo"}  # shampoo: its block statistics and preconditioners
WHOLE_MATRIX |= {"kron"}  # kron: the products A A^T per axis and the triangular solves of its factors
FREE_LAYOUT |= {"kron"}  # kron: its factors Q_i


def gathers(found: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The collectives that move tensors: anything but an all-reduce of a statistic."""
    return [(op, n) for op, n in found if op != "all-reduce" or n > STATISTIC_LIMIT]


def sharding_mismatches(params, state) -> tuple[int, list[str]]:
    """Check that every parameter-shaped state leaf has its parameter's sharding.

    A parameter-shaped subtree of the state is one with the parameters' tree
    structure; its leaves shaped like their parameter must have the same
    sharding, and leaves shaped ``(k, *param.shape)`` (histories) the same with
    a whole leading dimension. Returns the number of leaves checked and a
    sentence for each mismatch.
    """
    pdef = jax.tree.structure(params)
    subtrees = jax.tree_util.tree_flatten_with_path(state, is_leaf=lambda n: jax.tree.structure(n) == pdef)[0]
    checked, bad = 0, []
    for path, sub in subtrees:
        if jax.tree.structure(sub) != pdef:
            continue
        for (ppath, p), s in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(sub)):
            where = gradtx.tree.path_str(path) + "/" + gradtx.tree.path_str(ppath)
            if not hasattr(s, "sharding") or p.ndim == 0:
                continue  # a scalar is replicated or uncommitted, both fine next to any layout
            if s.shape == p.shape:
                expected = p.sharding
            elif s.ndim == p.ndim + 1 and s.shape[1:] == p.shape and isinstance(p.sharding, NamedSharding):
                expected = NamedSharding(p.sharding.mesh, P(None, *p.sharding.spec))
            else:
                continue
            checked += 1
            if not s.sharding.is_equivalent_to(expected, s.ndim):
                bad.append(
                    f"{where}: {getattr(s.sharding, 'spec', s.sharding)}, "
                    f"expected {getattr(expected, 'spec', expected)}"
                )
    return checked, bad


# ----------------------------------------------------------------- the problems


def mlp_params(seed=0):
    rng = np.random.default_rng(seed)
    w = lambda *shape: (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)  # noqa: E731
    return {
        "hidden": {"kernel": w(16, 32), "bias": np.zeros(32, np.float32)},
        "out": {"kernel": w(32, 8), "bias": np.zeros(8, np.float32)},
        "odd": w(3, 5),
        "scale": np.ones((), np.float32),
    }


def mlp_loss(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    pred = (h @ params["out"]["kernel"] + params["out"]["bias"]) * params["scale"]
    return jnp.mean(jnp.sum(jnp.square(pred - y), axis=-1)) + 1e-2 * jnp.sum(jnp.square(params["odd"]))


def mlp_batches(n_steps, batch_size, seed=1):
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((16, 8)).astype(np.float32) / 4
    out = []
    for _ in range(n_steps):
        x = rng.standard_normal((batch_size, 16)).astype(np.float32)
        out.append((x, np.tanh(x @ teacher).astype(np.float32)))
    return out


# Parameters for the sharded-jit check, with the three layouts on a (data=2, model=4) mesh.
SHAPES = {
    "embed": (32, 16),
    "hidden": {"kernel": (16, 64), "bias": (64,)},
    "out": {"kernel": (64, 8), "bias": (8,)},
    "odd": (6, 5),
    "scale": (),
}
LAYOUTS = {
    "data": {
        "embed": P(),
        "hidden": {"kernel": P(), "bias": P()},
        "out": {"kernel": P(), "bias": P()},
        "odd": P(),
        "scale": P(),
    },
    "model": {
        "embed": P(None, "model"),
        "hidden": {"kernel": P(None, "model"), "bias": P("model")},
        "out": {"kernel": P("model", None), "bias": P()},
        "odd": P(),
        "scale": P(),
    },
    "2d": {
        "embed": P("data", "model"),
        "hidden": {"kernel": P("data", "model"), "bias": P("model")},
        "out": {"kernel": P("model", "data"), "bias": P("model")},
        "odd": P("data"),
        "scale": P(),
    },
}


def surrogate_params(seed=2):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: rng.standard_normal(s).astype(np.float32), SHAPES, is_leaf=lambda s: isinstance(s, tuple)
    )


def surrogate_loss(params):
    """A separable loss: its gradient is elementwise, so computing it moves no data between devices."""
    leaves = jax.tree.leaves(params)
    return sum(
        (i + 1) * jnp.sum(0.5 * jnp.square(p - 1.0)) + 0.05 * jnp.sum(jnp.cos(3.0 * p)) for i, p in enumerate(leaves)
    )


# ------------------------------------------------------------------------ pmap


def _is_key(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key)


def _to_host(tree):
    return jax.tree.map(lambda x: x if _is_key(x) else np.asarray(x), tree)


def _build(table: dict) -> tuple[dict, list[str]]:
    txs, failures = {}, []
    for name, make in table.items():
        try:
            txs[name] = gradtx.chain(gradtx.add_noise(1e-2, 0.0, seed=0), make()) if name in PERTURBED else make()
        except Exception as error:  # noqa: BLE001
            failures.append(f"{name}: construction failed: {type(error).__name__}: {error}")
    return txs, failures


def _traceable(fn, txs: dict, *args) -> tuple[dict, list[str]]:
    """The transforms for which ``fn({name: tx}, *args)`` traces; a sentence for each that does not.

    All transforms run in one program (one compilation instead of dozens);
    one that cannot be traced is left out and reported, not allowed to hide the others.
    """
    try:
        jax.eval_shape(functools.partial(fn, txs), *args)
        return txs, []
    except Exception:  # noqa: BLE001 - find which
        pass
    good, failures = {}, []
    for name, tx in txs.items():
        try:
            jax.eval_shape(functools.partial(fn, {name: tx}), *args)
            good[name] = tx
        except Exception as error:  # noqa: BLE001
            failures.append(f"{name}: {type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}")
    return good, failures


def _train_mlp(txs, params0, xs, ys, axis_name=None):
    """``len(xs)`` steps of every transform on the MLP; with ``axis_name``, data-parallel under pmap."""
    out = {}
    for name, tx in txs.items():

        def body(carry, inputs, tx=tx):
            params, state = carry
            batch, t = inputs
            loss, grads = jax.value_and_grad(mlp_loss)(params, batch)
            value_fn = lambda p: mlp_loss(p, batch)  # noqa: E731
            if axis_name is not None:
                loss, grads = jax.lax.pmean((loss, grads), axis_name)
                value_fn = distributed.pmean_loss(value_fn, axis_name)
            updates, state = tx.update(grads, state, params, **extra_args(loss, grads, value_fn, t))
            return (gradtx.apply_updates(params, updates), state), None

        steps = jnp.arange(xs.shape[0])
        (params, state), _ = jax.lax.scan(body, (params0, tx.init(params0)), ((xs, ys), steps))
        out[name] = (params, state)
    return out


def check_pmap():
    """Every optimizer under pmap, gradients averaged with pmean, against the single-device run."""
    n_steps, per_device = 3, 8
    params0 = mlp_params()
    xs, ys = (np.stack(a) for a in zip(*mlp_batches(n_steps, N_DEVICES * per_device)))
    split = lambda a: a.reshape((n_steps, N_DEVICES, per_device) + a.shape[2:])  # noqa: E731
    txs, failures = _build(SELECTED)
    txs, more = _traceable(_train_mlp, txs, params0, xs, ys)
    failures += more
    progress("pmap: single device,", len(txs), "optimizers")
    reference = _to_host(jax.jit(functools.partial(_train_mlp, txs))(params0, xs, ys))
    progress("pmap: 8 devices")
    run = jax.pmap(functools.partial(_train_mlp, txs, axis_name="devices"), axis_name="devices", in_axes=(None, 1, 1))
    got = _to_host(run(params0, split(xs), split(ys)))
    diffs = {}
    for name in txs:
        for d in range(N_DEVICES):
            _compare(
                f"{name} (device {d})", reference[name], jax.tree.map(lambda x, d=d: x[d], got[name]), diffs, failures
            )
        diffs[name] = max(diffs.pop(f"{name} (device {d})") for d in range(N_DEVICES))
    missing = sorted(set(SELECTED) - set(txs))
    return {"failures": failures, "max_diff": diffs, "optimizers": sorted(txs), "not_run": missing}


# ------------------------------------------------------------------- sharded jit


def global_statistic_transforms():
    """Transforms whose update reduces over the whole tree or over whole leaves."""
    found = {
        "clip_by_global_norm+adam": lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adam(1e-2)),
        "adam+clip_by_global_norm": lambda: gradtx.chain(
            gradtx.scale_by_adam(), gradtx.clip_by_global_norm(0.5), gradtx.scale_by_learning_rate(1e-2)
        ),
    }
    found["clip_by_block_rms"] = lambda: gradtx.chain(gradtx.clip_by_block_rms(0.05), gradtx.sgd(0.1))
    found["adaptive_grad_clip"] = lambda: gradtx.chain(gradtx.adaptive_grad_clip(0.01), gradtx.sgd(0.1))
    found["scale_by_trust_ratio"] = lambda: gradtx.chain(
        gradtx.scale_by_adam(), gradtx.scale_by_trust_ratio(), gradtx.scale_by_learning_rate(1e-2)
    )
    return found


def _step_surrogate(txs, params, states, t):
    """One step of every transform on the separable loss; ``params``, ``states``: dicts by name."""
    new_params, new_states = {}, {}
    for i, (name, tx) in enumerate(txs.items()):
        with jax.named_scope(f"transform{i}"):  # names each op, collectives included, in the HLO
            loss, grads = jax.value_and_grad(surrogate_loss)(params[name])
            updates, new_states[name] = tx.update(
                grads, states[name], params[name], **extra_args(loss, grads, surrogate_loss, t)
            )
            new_params[name] = gradtx.apply_updates(params[name], updates)
    return new_params, new_states


def _init_all(txs, params):
    """Every transform's state; ``params`` is one tree for all, or a dict of trees by the same keys."""
    return {k: tx.init(params[k] if isinstance(params, dict) and k in params else params) for k, tx in txs.items()}


def _same_layout(a, b) -> bool:
    return all(x.sharding.is_equivalent_to(y.sharding, x.ndim) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _check_mesh(txs, mesh, at, plan, params0, reference, n_steps, diffs, checked, seen) -> list[str]:
    """The sharded-jit checks on one mesh, every (layout, transforms) of ``plan`` in one program.

    Each entry is keyed ``"name [<at> mesh, <layout> layout]"``; returns the failures.
    """
    failures, entries, params = [], {}, {}
    for layout, names in plan:
        shardings = jax.tree.map(
            lambda spec: NamedSharding(mesh, spec), LAYOUTS[layout], is_leaf=lambda x: isinstance(x, P)
        )
        laid_out = jax.device_put(params0, shardings)
        for name in names:
            key = f"{name} [{at} mesh, {layout} layout]"
            entries[key], params[key] = txs[name], laid_out
    jitted = jax.jit(functools.partial(_init_all, entries))(params)
    for key, tx in entries.items():
        for how, st in (("eager init", tx.init(params[key])), ("jit init", jitted[key])):
            n, bad = sharding_mismatches(params[key], st)
            checked[f"{key} {how}"] = n
            failures += [f"{key}, {how}: {b}" for b in bad]
    # one program for all; an entry that does not trace with its layout is reported and left out
    good, more = _traceable(_step_surrogate, entries, params, jitted, 0)
    failures += [f"{m.split(': ', 1)[0]}, the update does not trace: {m.split(': ', 1)[1]}" for m in more]
    params, jitted = {k: params[k] for k in good}, {k: jitted[k] for k in good}
    compiled = jax.jit(functools.partial(_step_surrogate, good)).lower(params, jitted, 0).compile()
    keys, owners = list(good), {}
    for op, n, scope in collectives(compiled.as_text(), with_scope=True):
        owners.setdefault(keys[scope] if scope is not None else "(unattributed)", set()).add((op, n))
    for layout, _ in plan:  # what each layout's programs exchange
        seen[f"[{at} mesh, {layout} layout]"] = sorted(
            {c for k, cs in owners.items() if k.endswith(f"{layout} layout]") for c in cs}
        )
    for key, found in owners.items():
        if gathers(list(found)) and key.split(" [")[0] not in WHOLE_MATRIX:
            failures.append(f"{key}: the compiled update moves tensors: {sorted(gathers(list(found)))}")
        elif found and key.split(" [")[0] in ELEMENTWISE:
            failures.append(f"{key}: an elementwise optimizer, yet its update communicates: {sorted(found)}")
    states, drifted, updated = jitted, set(), params
    for t in range(n_steps):
        updated, new_states = compiled(updated, states, t)
        drifted |= {
            k for k in good if not _same_layout(new_states[k], states[k]) and k.split(" [")[0] not in FREE_LAYOUT
        }
        states = jax.device_put(new_states, jax.tree.map(lambda x: x.sharding, jitted))  # keep the program's layout
    failures += [f"{k}: the update returns its state in another layout than it took" for k in sorted(drifted)]
    for key in good:
        n, bad = sharding_mismatches(params[key], new_states[key])
        failures += [f"{key}, after {n_steps} updates: {b}" for b in bad]
    got = _to_host((updated, states))
    for key in good:
        name = key.split(" [")[0]
        _compare(key, (reference[0][name], reference[1][name]), (got[0][key], got[1][key]), diffs, failures)
    return failures


def check_sharded():
    """Sharded jit: state follows the parameters (jit and eager init), no gathers, same numbers.

    Every optimizer runs on the 2-d layout; adam and the transforms with global
    statistics also on the data-parallel and model-parallel layouts; each on an
    Auto and an Explicit mesh.
    """
    n_steps = 3
    params0 = surrogate_params()
    statistics = global_statistic_transforms()
    txs, failures = _build({**SELECTED, **statistics})
    args = ({n: params0 for n in txs}, {n: jax.eval_shape(tx.init, params0) for n, tx in txs.items()}, 0)
    try:
        txs, more = _traceable(_step_surrogate, txs, *args)
    except Exception as error:  # noqa: BLE001 - an init that does not trace
        txs, more = {}, [f"{type(error).__name__}: {error}"]
    failures += more
    progress("sharded: single device,", len(txs), "transforms")
    step = jax.jit(functools.partial(_step_surrogate, txs))
    params, states = {n: params0 for n in txs}, _init_all(txs, params0)
    for t in range(n_steps):
        params, states = step(params, states, t)
    reference = _to_host((params, states))

    diffs, checked, seen = {}, {}, {}
    small = [n for n in txs if n in statistics or n == "adam"]
    plan = (("2d", list(txs)), ("model", small), ("data", small))
    for at in ("Auto", "Explicit"):
        mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(getattr(AxisType, at),) * 2)
        progress(f"sharded: {at} mesh,", sum(len(n) for _, n in plan), "transforms and layouts")
        try:
            failures += _check_mesh(txs, mesh, at, plan, params0, reference, n_steps, diffs, checked, seen)
        except Exception as error:  # noqa: BLE001
            failures.append(f"[{at} mesh]: {type(error).__name__}: {error}\n{traceback.format_exc(limit=4)}")
    return {
        "failures": failures,
        "max_diff": diffs,
        "checked_leaves": checked,
        "collectives": seen,
        "statistics": sorted(statistics),
        "transforms": sorted(txs),
    }


# --------------------------------------------------------------------- shard_map


def axis_name_transforms() -> dict:
    """The transforms with a global statistic that take ``axis_name``, each in a chain with Adam."""
    return {
        "clip_by_global_norm": lambda a: gradtx.chain(gradtx.clip_by_global_norm(1.0, axis_name=a), gradtx.adam(0.1)),
        "scale_by_trust_ratio": lambda a: gradtx.chain(
            gradtx.scale_by_adam(), gradtx.scale_by_trust_ratio(axis_name=a), gradtx.scale_by_learning_rate(0.1)
        ),
    }


def check_shard_map():
    """Global statistics inside shard_map and pmap when the parameters are split across the axis."""
    failures, diffs = [], {}
    rng = np.random.default_rng(3)
    params0 = {"a": rng.standard_normal((16, 4)).astype(np.float32), "b": rng.standard_normal(8).astype(np.float32)}
    grads = [jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32) * 3, params0) for _ in range(3)]

    def train(tx, params, grads):
        state = tx.init(params)
        for g in grads:
            updates, state = tx.update(g, state, params)
            params = gradtx.apply_updates(params, updates)
        return params

    split = lambda t: jax.tree.map(lambda x: x.reshape((N_DEVICES, -1) + x.shape[1:]), t)  # noqa: E731
    for name, make in axis_name_transforms().items():
        reference = jax.jit(lambda p, g, make=make: train(make(None), p, g))(params0, grads)
        for at in ("Auto", "Explicit"):
            mesh = jax.make_mesh((N_DEVICES,), ("x",), axis_types=(getattr(AxisType, at),))
            split_x = NamedSharding(mesh, P("x"))  # an Explicit mesh wants the inputs laid out already
            for axis_name in ("x", None):
                run = jax.jit(
                    jax.shard_map(
                        lambda p, g, a=axis_name, make=make: train(make(a), p, g),
                        mesh=mesh,
                        in_specs=(P("x"), P("x")),
                        out_specs=P("x"),
                    )
                )
                where = f"{name} [shard_map, {at} mesh, axis_name={axis_name}]"
                diff = max_diff(reference, run(jax.device_put(params0, split_x), jax.device_put(grads, split_x)))
                diffs[where] = diff
                if axis_name and not diff <= TOLERANCE:
                    failures.append(f"{where}: differs from one device by {diff:.3g}")
                if not axis_name and diff <= TOLERANCE:
                    failures.append(f"{where}: without axis_name it should see only local norms, but matched")
        # pmap with every leaf split along its leading axis
        run = jax.pmap(lambda p, g, make=make: train(make("x"), p, g), axis_name="x")
        got = jax.tree.map(lambda x, r: np.asarray(x).reshape(r.shape), run(split(params0), split(grads)), reference)
        where = f"{name} [pmap, leaves split, axis_name=x]"
        diffs[where] = max_diff(reference, got)
        if not diffs[where] <= TOLERANCE:
            failures.append(f"{where}: differs from one device by {diffs[where]:.3g}")
    # tree.norm of every order
    mesh = jax.make_mesh((N_DEVICES,), ("x",))
    for order in (1, 2, "inf"):
        whole = gradtx.tree.norm(grads[0], order)
        norm = jax.shard_map(
            lambda g, o=order: gradtx.tree.norm(g, o, axis_name="x"), mesh=mesh, in_specs=P("x"), out_specs=P()
        )
        diff = float(abs(jax.jit(norm)(jax.device_put(grads[0], NamedSharding(mesh, P("x")))) - whole) / whole)
        diffs[f"tree.norm ord={order} (relative)"] = diff
        if not diff <= 1e-6:
            failures.append(f"tree.norm(ord={order}, axis_name='x') differs by {diff:.3g} (relative)")
    return {"failures": failures, "max_diff": diffs, "transforms": sorted(axis_name_transforms())}


# ------------------------------------------------------------------------ ZeRO-1


def model_shapes(vocab=4096, d=256, layers=4, context=100):
    """The parameter shapes of a small GPT-like model (about 4.6 M parameters)."""
    tree = {"embed": (vocab, d), "position": (context, d), "final_norm": (d,), "odd": (3, 5)}
    for i in range(layers):
        tree[f"layer{i}"] = {
            "norm1": (d,),
            "qkv": (d, 3 * d),
            "qkv_bias": (3 * d,),
            "proj": (d, d),
            "norm2": (d,),
            "up": (d, 4 * d),
            "up_bias": (4 * d,),
            "down": (4 * d, d),
        }
    return tree


def _mlp_step_all(txs, params, states, batch):
    """One data-parallel step of every transform on the MLP; ``params``, ``states``: dicts by name."""
    new_params, new_states, losses = {}, {}, {}
    for name, tx in txs.items():
        losses[name], grads = jax.value_and_grad(mlp_loss)(params[name], batch)
        updates, new_states[name] = tx.update(grads, states[name], params[name], value=losses[name])
        new_params[name] = gradtx.apply_updates(params[name], updates)
    return new_params, new_states, losses


def check_zero1():
    """ZeRO-1 state sharding: layout, numerics against one device and the replicated run, memory."""
    failures, diffs = [], {}
    n_steps, batch_size = 4, 64
    params0 = mlp_params()
    batches = mlp_batches(n_steps, batch_size)
    cases = {
        "adamw+clip": lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(1e-2)),
        "adam+clip (norm of sharded updates)": lambda: gradtx.chain(
            gradtx.scale_by_adam(), gradtx.clip_by_global_norm(0.5), gradtx.scale_by_learning_rate(1e-2)
        ),
        "sgd_momentum": OPTIMIZERS["sgd_momentum"],
        "rmsprop_centered_momentum": OPTIMIZERS["rmsprop_centered_momentum"],
    }
    txs = {name: make() for name, make in cases.items()}
    init_all = gradtx.GradientTransformation(lambda p: {n: tx.init(p[n]) for n, tx in txs.items()}, None)
    step_all = functools.partial(_mlp_step_all, txs)

    progress("zero1: single device")
    params, states = {n: params0 for n in txs}, init_all.init({n: params0 for n in txs})
    ref = jax.jit(step_all)
    for batch in batches:
        params, states, _ = ref(params, states, batch)
    reference = _to_host((params, states))

    hlo_collectives, split_leaves = {}, {}
    for at, layouts in (("Auto", ("zero1", "replicated")), ("Explicit", ("zero1",))):
        mesh = jax.make_mesh((N_DEVICES,), ("data",), axis_types=(getattr(AxisType, at),))
        for layout in layouts:
            where = f"[{at} mesh, {layout} state]"
            progress("zero1:", where)
            try:
                params = jax.device_put({n: params0 for n in txs}, distributed.replicated(mesh))
                if layout == "zero1":
                    states = distributed.zero1_init(init_all, params, mesh)
                    expected = distributed.zero1_state_sharding(jax.eval_shape(init_all.init, params), mesh)
                else:
                    states = jax.jit(init_all.init, out_shardings=distributed.replicated(mesh))(params)
                    expected = jax.tree.map(lambda x: distributed.replicated(mesh), states)  # noqa: B023 (used at once)
                shardings = jax.tree.map(lambda x: x.sharding, states)
                if not all(
                    a.is_equivalent_to(b, x.ndim)
                    for a, b, x in zip(jax.tree.leaves(shardings), jax.tree.leaves(expected), jax.tree.leaves(states))
                ):
                    failures.append(f"{where}: the initial state is not laid out as asked")
                put = lambda b: jax.device_put(b, distributed.batch_sharding(mesh))  # noqa: E731, B023 (used at once)
                run = (
                    distributed.zero1_jit(step_all, shardings, mesh, donate=False)
                    .lower(params, states, put(batches[0]))
                    .compile()
                )
                hlo_collectives[where] = sorted(set(collectives(run.as_text())))
                for batch in batches:
                    params, states, _ = run(params, states, put(batch))
                if not all(
                    x.sharding.is_equivalent_to(e, x.ndim)
                    for x, e in zip(jax.tree.leaves(states), jax.tree.leaves(expected))
                ):
                    failures.append(f"{where}: the state left its layout")
                if layout == "zero1":
                    split_leaves[where] = sum(
                        1 for x in jax.tree.leaves(states) if x.ndim and "data" in str(x.sharding.spec)
                    )
                    if not split_leaves[where]:
                        failures.append(f"{where}: no state leaf is split across 'data'")
                got = _to_host((params, states))
                for name in txs:
                    _compare(
                        f"{name} {where}",
                        (reference[0][name], reference[1][name]),
                        (got[0][name], got[1][name]),
                        diffs,
                        failures,
                    )
            except Exception as error:  # noqa: BLE001
                failures.append(f"{where}: {type(error).__name__}: {error}\n{traceback.format_exc(limit=4)}")

    memory, n_params = state_memory()
    full = memory[0]["replicated"]
    for row in memory:
        if row["replicated"] != full:
            failures.append(f"replicated state on {row['devices']} devices holds {row['replicated']} bytes, not {full}")
        if not row["zero1"] <= full / row["devices"] + 4096:
            failures.append(
                f"ZeRO-1 state on {row['devices']} devices holds {row['zero1']} bytes per device, "
                f"more than 1/{row['devices']} of {full} (+4 KiB for the unsplit leaves)"
            )
    return {
        "failures": failures,
        "max_diff": diffs,
        "memory": memory,
        "n_params": n_params,
        "collectives": hlo_collectives,
        "split_leaves": split_leaves,
    }


def state_memory(sizes=(1, 2, 4, 8)):
    """Adam's optimizer-state bytes on the first device, replicated and with ZeRO-1, on 1 to 8 devices."""
    shapes = model_shapes()
    is_shape = lambda s: isinstance(s, tuple)  # noqa: E731
    n_params = sum(math.prod(s) for s in jax.tree.leaves(shapes, is_leaf=is_shape))
    tx = gradtx.adam(1e-3)
    memory = []
    for n in sizes:
        progress("memory:", n, "devices")
        mesh = jax.make_mesh((n,), ("data",), devices=jax.devices()[:n])
        first = mesh.devices.flat[0]
        params = jax.tree.map(
            lambda s: jnp.zeros(s, jnp.float32, device=distributed.replicated(mesh)),  # noqa: B023 (used at once)
            shapes,
            is_leaf=is_shape,
        )
        replicated = jax.jit(tx.init)(params)
        zero1 = distributed.zero1_init(tx, params, mesh)
        memory.append(
            {
                "devices": n,
                "params": distributed.bytes_per_device(params, first),
                "replicated": distributed.bytes_per_device(replicated, first),
                "zero1": distributed.bytes_per_device(zero1, first),
            }
        )
        del params, replicated, zero1
    return memory, n_params


def check_memory():
    """Only the table of :func:`state_memory`, printed as Markdown on stderr."""
    memory, n_params = state_memory()
    print(
        f"\nAdam, {n_params:,} float32 parameters (tests/suites/distributed_worker.py:model_shapes); "
        f"bytes on the mesh's first device:\n",
        file=sys.stderr,
    )
    print("| devices | parameters | state, replicated | state, ZeRO-1 | ZeRO-1 / replicated |", file=sys.stderr)
    print("|--:|--:|--:|--:|--:|", file=sys.stderr)
    for r in memory:
        print(
            f"| {r['devices']} | {r['params']:,} | {r['replicated']:,} | {r['zero1']:,} | "
            f"{r['zero1'] / r['replicated']:.4f} |",
            file=sys.stderr,
        )
    return {"failures": [], "memory": memory, "n_params": n_params}


CHECKS = {
    "pmap": check_pmap,
    "sharded": check_sharded,
    "shard_map": check_shard_map,
    "zero1": check_zero1,
    "memory": check_memory,
}


def main(argv):
    if len(jax.devices()) != N_DEVICES:
        print(
            f"need {N_DEVICES} devices: set XLA_FLAGS=--xla_force_host_platform_device_count={N_DEVICES}",
            file=sys.stderr,
        )
        return 2
    if "--all" in argv:
        argv = [a for a in argv if a != "--all"]
        SELECTED.clear()
        SELECTED.update(OPTIMIZERS)
    for name in argv or list(CHECKS):
        start = time.perf_counter()
        try:
            result = CHECKS[name]()
        except Exception as error:  # noqa: BLE001 - the test reports it
            result = {"failures": [f"{type(error).__name__}: {error}\n{traceback.format_exc()}"]}
        result["check"], result["seconds"] = name, round(time.perf_counter() - start, 2)
        if SCALED:
            result["scaled_diff"] = dict(SCALED)
            SCALED.clear()
        print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
