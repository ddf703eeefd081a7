"""The benchmark harness (benchmarks/) measures what it says, on a tiny tree.

No timing is ever asserted: these tests check the harness's bookkeeping (rows, JSON, bytes per
parameter, the floors' definitions), that the step it times is the optimizer's step, that the
libraries run the same configurations, and that the docs' tables are rendered from the JSON.
Optax and torch parts run only where those are installed.
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks import libraries, render, run, timing, trees  # noqa: E402


def assert_same_steps(start, actual, expected, rtol=1e-4, **kwargs):
    """The parameters moved alike from ``start``: equal up to float32 rounding, which differs between
    implementations mostly in the bias corrections' 1 - b^t (relative error ~1e-5 for b2 = 0.999)."""
    start = np.asarray(start, np.float64)
    np.testing.assert_allclose(np.asarray(actual) - start, np.asarray(expected) - start, rtol=rtol, atol=2e-8, **kwargs)


# Optax's Prodigy adds d_{k+1} eps to sqrt(v) where gradtx adds d_k eps (the paper's): on the tiny
# tree, where d grows 1,000-fold in three steps, that moves the steps by about 6e-4 of their size.
SAME_STEPS_RTOL = {"prodigy": 2e-3}
# torch.optim.Muon normalises by |X|_F + 1e-7 before Newton-Schulz (gradtx and Optax: + 1e-8)
TORCH_TOO = ("adam", "adamw", "chain", "sgd", "muon")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    argv = ["--quick", "--optimizers", "adam,sgd,lion", "--steps", "2", "--warmup", "1", "--out", str(out)]
    return run.main(argv), out


def test_rows_have_every_field(result):
    rows = result[0]["rows"]
    floor = {r["optimizer"]: r["step_ms"] for r in rows if r["library"] == "floor"}
    assert [(r["optimizer"], r["library"]) for r in rows] == [
        (o, lib) for o in ("adam", "sgd", "lion") for lib in run.LIBRARIES
    ]
    for row in rows:
        assert tuple(row) == run.FIELDS
        assert (row["tree"], row["leaves"], row["params"]) == ("tiny", 4, 1072)
        if row["status"] == "ok":
            assert len(row["step_ms_samples"]) == 2 and row["step_ms"] > 0
            assert row["x_floor"] == row["step_ms"] / floor[row["optimizer"]]
        else:
            assert row["status"] in ("n/a", "unsupported", "skipped") and row["note"] and row["step_ms"] is None
    torch_lion = [r for r in rows if r["optimizer"] == "lion" and r["library"].startswith("torch")]
    assert {r["status"] for r in torch_lion} <= {"n/a", "skipped"}


def test_json_round_trips(result):
    data, out = result
    with open(out) as f:
        assert json.load(f) == data
    machine = data["machine"]
    for key in ("cpu", "cores", "memory_gib", "jax", "jaxlib", "xla_backend", "xla_device"):
        assert machine[key], key
    assert data["command"].startswith("python3 benchmarks/run.py --quick") and data["date"]


def test_state_bytes_per_parameter(result):
    figures = {(r["optimizer"], r["library"]): r["state_bytes_per_param"] for r in result[0]["rows"]}
    assert figures["adam", "gradtx"] == 8.0  # mu and nu in float32; 0-d counts and hyperparameters left out
    assert figures["sgd", "gradtx"] == 4.0
    assert figures["adam", "floor"] == 8.0 and figures["sgd", "floor"] == 4.0


def test_floor_bytes_match_the_definitions():
    expected = {
        "adam": 28,
        "adamw": 28,
        "chain": 32,
        "sgd": 20,
        "lion": 20,
        "adafactor": 24,
        "schedule_free_adamw": 28,  # reads y, g, z, v; writes y, z, v
        "prodigy": 40,  # reads x, g, x0, s, m, v; writes x, s, m, v
        "ademamix": 36,  # reads p, g, m1, m2, v; writes p, m1, m2, v
    }
    assert {name: floor.bytes_per_param for name, floor in timing.FLOORS.items()} == expected
    params, grads = trees.build("tiny")
    for name, floor in timing.FLOORS.items():
        arrays = [s for s in floor.state if s not in timing.SCALARS]
        written = [s for s in arrays if s not in timing.READ_ONLY]
        assert set(floor.writes) == {"p", *written} and set(floor.reads) == {"p", "g", *arrays}, name
        assert timing.floor_step(name, params, grads).state_bytes() == 4 * 1072 * len(arrays), name


@pytest.mark.parametrize(
    "optimizer", ["adam", "adamw", "chain", "sgd", "lion", "schedule_free_adamw", "prodigy", "ademamix"]
)
def test_floor_is_the_optimizer_on_one_flat_array(optimizer):
    """The floor computes the same update as gradtx (Adafactor's floor has flat, not factored, statistics)."""
    params, grads = trees.build("tiny")
    floor = timing.floor_step(optimizer, params, grads)
    tx = libraries.jax_optimizer(gradtx, optimizer)
    p, g = jnp.array(floor.params), floor.grads  # a copy: the floor donates its parameters
    state = tx.init(p)
    for _ in range(3):
        floor()
        updates, state = tx.update(g, state, p)
        p = gradtx.apply_updates(p, updates)
    start = np.concatenate([x.ravel() for x in jax.tree.leaves(params)])
    assert_same_steps(start, floor.leaves()[0], p)


def test_harness_times_the_update_of_a_plain_loop():
    params, grads = trees.build("tiny")
    before = jax.tree.map(np.copy, params)
    step = libraries.make("gradtx", "adam", params, grads)
    timing.measure(step, steps=2, warmup=1)  # three steps in all

    tx = gradtx.adam(1e-3)
    p, g = jax.tree.map(jnp.asarray, params), jax.tree.map(jnp.asarray, grads)
    state = tx.init(p)
    for _ in range(3):
        updates, state = tx.update(g, state, p)
        p = gradtx.apply_updates(p, updates)
    for ours, expected in zip(step.leaves(), jax.tree.leaves(p)):
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-9)  # within an ulp or two
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(before)))


GRADTX_ONLY = [
    name
    for name, configuration in libraries.CONFIGURATIONS.items()
    if isinstance(configuration, dict) and "optax" not in configuration
]


def test_configurations_only_gradtx_has_are_not_run_for_the_others():
    assert GRADTX_ONLY == [f"{n}{k}" for n in ("shampoo", "soap", "kron") for k in ("", "_refresh")]
    params, grads = trees.build("tiny")
    for name in GRADTX_ONLY:
        base = name.removesuffix("_refresh")
        for library, note in [("optax", f"optax has no {base}"), ("floor", f"no flat-array floor: {base} works")]:
            with pytest.raises(libraries.Unsupported, match=note) as error:
                libraries.make(library, name, params, grads)
            assert error.value.status == "n/a"
        assert libraries.torch_configuration(name) == "n/a"


@pytest.mark.parametrize("optimizer", [name for name in libraries.OPTIMIZERS if name not in GRADTX_ONLY])
def test_libraries_run_the_same_configuration(optimizer):
    pytest.importorskip("optax")
    params, grads = trees.build("tiny")
    steps = {
        "gradtx": libraries.make("gradtx", optimizer, params, grads),
        "optax": libraries.make("optax", optimizer, params, grads),
    }
    if optimizer in TORCH_TOO and not libraries.missing("torch-foreach"):
        steps["torch-foreach"] = libraries.make("torch-foreach", optimizer, params, grads)
    for step in steps.values():
        timing.measure(step, steps=3, warmup=0)
    ours = steps.pop("gradtx").leaves()
    for library, step in steps.items():
        for start, expected, theirs in zip(jax.tree.leaves(params), ours, step.leaves()):
            if optimizer == "muon" and library.startswith("torch"):
                if start.ndim == 2:  # torch's Newton-Schulz runs in bfloat16: the steps agree within 3%
                    moved = np.asarray(expected, np.float64) - start
                    np.testing.assert_allclose(theirs - start, moved, atol=0.03 * np.abs(moved).max())
                continue  # gradtx's and Optax's Muon give the vectors Nesterov's Adam, torch plain Adam
            assert_same_steps(start, theirs, expected, SAME_STEPS_RTOL.get(optimizer, 1e-4), err_msg=library)


def test_markdown_has_every_row(result):
    data = result[0]
    full = render.full_table(data).splitlines()
    assert len(full) == 2 + len(data["rows"])
    assert all(line.startswith("| ") and line.endswith(" |") for line in full)
    for line, row in zip(full[2:], data["rows"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:4] == [row["tree"], row["optimizer"], row["library"], render.step_cell(row)]
    summary = render.summary_table(data).splitlines()
    assert [line.split("|")[2].strip() for line in summary[2:]] == ["adam", "sgd", "lion"]


def test_plots_are_written(result, tmp_path):
    pytest.importorskip("matplotlib")
    paths = render.plots(result[0], str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["benchmarks_params.png", "benchmarks_leaves.png"]
    assert all(os.path.getsize(p) > 1000 for p in paths)


def test_docs_tables_are_rendered_from_their_json():
    with open(os.path.join(ROOT, "docs", "benchmarks.md"), encoding="utf-8") as f:
        page = f.read()
    sources = render.generated_sources(page)
    assert sources and len(set(sources)) == len(sources), sources
    for source in sources:
        with open(os.path.join(ROOT, source)) as f:
            data = json.load(f)
        assert render.docs_section(data, source) in page, (
            f"rerun: python3 benchmarks/render.py {source} --docs docs/benchmarks.md"
        )


def test_preconditioned_table_averages_plain_and_refreshing_steps_at_each_interval():
    def row(optimizer, step_ms, library="gradtx"):
        fields = {"compile_s": 1.0, "state_bytes_per_param": 12.0}
        return {"tree": "mlp", "optimizer": optimizer, "library": library, "status": "ok", "step_ms": step_ms} | fields

    rows = [row("adamw", 10.0), row("soap", 20.0), row("soap_refresh", 120.0), row("kron", 30.0)]
    rows += [row("kron_refresh", 63.0), row("shampoo", 40.0), row("shampoo_refresh", 90.0), row("adamw", 1.0, "optax")]
    lines = render.preconditioned_table({"rows": rows}).splitlines()[2:]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    # soap: 20 + 100 / 10 = 30 ms, 3x AdamW; kron: 30 + 33 * 0.03 = 30.99; shampoo refreshes every step: 90
    assert [(c[1], c[4], c[5], c[6]) for c in cells] == [
        ("soap", "10", "30", "3"),
        ("kron", "33", "31", "3.1"),
        ("shampoo", "1", "90", "9"),
    ]
    assert render.preconditioned_table({"rows": rows[:1]}) is None
