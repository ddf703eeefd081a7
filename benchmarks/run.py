"""Run gradtx beside Optax and torch.optim on the same trees; print a table and write JSON.

    python3 dev.py bench                                  # everything (several minutes)
    python3 dev.py bench --quick                          # a tiny tree, 3 steps: a smoke run
    python3 dev.py bench --trees mlp,gpt2 --optimizers adam --libraries gradtx,optax --steps 20

Each (tree, optimizer) is first run as the floor (benchmarks/timing.py), then by each library.
Step time is the median of ``--steps`` timed steps after ``--warmup`` steps. The JSON goes to
``--out`` or benchmarks/results/<machine>.json (<machine>-partial.json for a filtered run);
benchmarks/render.py turns it into the docs' tables and plots.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks import libraries, render, timing, trees  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREES = ("single", "mlp", "many", "gpt2")
LIBRARIES = ("floor",) + libraries.LIBRARIES
ALIASES = {"torch": ("torch-foreach", "torch-fused")}
FIELDS = (
    "tree",
    "leaves",
    "params",
    "optimizer",
    "library",
    "status",
    "note",
    "step_ms",
    "step_ms_samples",
    "compile_s",
    "state_bytes_per_param",
    "xla_bytes_per_param",
    "floor_bytes_per_param",
    "x_floor",
    "x_optax",
    "x_torch_fused",
)


def choices(allowed, aliases=None):
    def parse(text):
        names = [n for name in text.split(",") for n in (aliases or {}).get(name, (name,))]
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(allowed)}")
        return [name for name in allowed if name in names]  # in the table's order

    return parse


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trees", type=choices(tuple(trees.TREES)), help=f"comma-separated (default: {','.join(TREES)})"
    )
    parser.add_argument(
        "--optimizers",
        type=choices(libraries.OPTIMIZERS),
        default=list(libraries.OPTIMIZERS),
        help=f"comma-separated (default: {','.join(libraries.OPTIMIZERS)})",
    )
    parser.add_argument(
        "--libraries",
        type=choices(LIBRARIES, ALIASES),
        default=list(LIBRARIES),
        help=f"comma-separated, 'torch' for both (default: {','.join(LIBRARIES)})",
    )
    parser.add_argument("--steps", type=int, help="timed steps per configuration (default 10; 3 with --quick)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--quick", action="store_true", help="only the tiny tree (1,072 parameters): a smoke run")
    parser.add_argument("--out", help="where to write the JSON (default benchmarks/results/<machine>.json)")
    args = parser.parse_args(argv)
    args.trees = args.trees or (["tiny"] if args.quick else list(TREES))
    args.steps = args.steps or (3 if args.quick else 10)
    chosen = (args.trees, args.optimizers, args.libraries)
    args.partial = chosen != (list(TREES), list(libraries.OPTIMIZERS), list(LIBRARIES))
    return args


def version(module: str) -> str | None:
    try:
        return importlib.import_module(module).__version__
    except ImportError:
        return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: other work on the machine slows the steps down."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine() -> dict:
    """The machine and software that the figures belong to."""
    cpu = platform.processor() or platform.machine()
    memory = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
        with open("/proc/meminfo") as f:
            memory = round(int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) / 2**20, 1)
    except OSError:
        pass
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    torch = sys.modules.get("torch")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        **{name: version(name) for name in ("numpy", "jax", "jaxlib", "gradtx", "optax", "torch")},
        "gradtx_git": git.stdout.strip() or None,
        "xla_backend": jax.default_backend(),
        "xla_device": f"{len(jax.devices())} x {jax.devices()[0].device_kind}",
        "torch_threads": torch.get_num_threads() if torch else None,
        "load_average": load_average(),
    }


def tag(info: dict) -> str:
    """A file name for the machine, e.g. 'intel-xeon-processor-2c'."""
    cpu = re.sub(r"\((r|tm)\)|\bcpu\b|@.*", "", info["cpu"].lower())
    return "-".join(re.findall(r"[a-z0-9]+", cpu)) + f"-{info['cores']}c"


def run_one(library: str, optimizer: str, params, grads, steps: int, warmup: int) -> dict:
    """One configuration's figures: a row without the tree fields and the ratios."""
    row = dict.fromkeys(FIELDS[5:]) | {"status": "ok", "note": ""}
    if libraries.missing(library):
        return row | {"status": "skipped", "note": libraries.missing(library)}
    try:
        step = libraries.make(library, optimizer, params, grads)
    except libraries.Unsupported as error:
        return row | {"status": error.status, "note": str(error).splitlines()[0]}
    samples = timing.measure(step, steps, warmup)
    n = sum(x.size for x in jax.tree.leaves(params))
    row.update(
        step_ms=timing.median(samples),
        step_ms_samples=samples,
        compile_s=step.compile_s,
        state_bytes_per_param=step.state_bytes() / n,
        xla_bytes_per_param=None if step.xla_bytes is None else step.xla_bytes / n,
    )
    if library == "floor":
        traffic = timing.FLOORS[optimizer].bytes_per_param
        row.update(
            floor_bytes_per_param=traffic, note=f"{traffic} B/param: {traffic * n / row['step_ms'] / 1e6:.1f} GB/s"
        )
    return row


def add_ratios(rows: list[dict]) -> None:
    """x floor, x optax and x torch-fused: each row's step time over theirs, same tree and optimizer."""
    ms = {(r["tree"], r["optimizer"], r["library"]): r["step_ms"] for r in rows}
    for row in rows:
        for field, other in (("x_floor", "floor"), ("x_optax", "optax"), ("x_torch_fused", "torch-fused")):
            theirs = ms.get((row["tree"], row["optimizer"], other))
            row[field] = row["step_ms"] / theirs if row["step_ms"] and theirs else None


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started, date = time.perf_counter(), datetime.datetime.now(datetime.timezone.utc)
    if not libraries.missing("torch-foreach"):
        import torch

        torch.set_num_threads(os.cpu_count())
    info = machine()
    rows = []
    for tree in args.trees:
        leaves, n = trees.size(tree)
        params, grads = trees.build(tree)
        print(f"{tree}: {leaves:,} leaves, {n:,} parameters ({trees.DESCRIPTIONS[tree]})", flush=True)
        for optimizer in args.optimizers:
            for library in args.libraries:
                row = {"tree": tree, "leaves": leaves, "params": n, "optimizer": optimizer, "library": library}
                row.update(run_one(library, optimizer, params, grads, args.steps, args.warmup))
                rows.append(row)
                jax.clear_caches()
                gc.collect()
                print("  " + render.progress(row), flush=True)
        del params, grads
        gc.collect()
    add_ratios(rows)
    info["load_average_after"] = load_average()
    result = {
        "machine": info,
        "command": shlex.join(["python3", "benchmarks/run.py", *argv]),
        "date": date.isoformat(timespec="seconds"),  # when the run started
        "steps": args.steps,
        "warmup": args.warmup,
        "runtime_s": round(time.perf_counter() - started, 1),
        "configurations": {
            name: {
                "gradtx and optax": libraries.CONFIGURATIONS[name],
                "torch.optim": libraries.torch_configuration(name),
            }
            for name in args.optimizers
        },
        "trees": {
            t: dict(zip(("leaves", "params"), trees.size(t)), description=trees.DESCRIPTIONS[t]) for t in args.trees
        },
        "rows": rows,
    }
    name = tag(info) + ("-partial" if args.partial else "") + ".json"
    out = args.out or os.path.join(ROOT, "benchmarks", "results", name)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print("\n" + render.full_table(result))
    print(f"\n{len(rows)} configurations in {result['runtime_s']:.0f} s; wrote {os.path.relpath(out)}")
    print(
        f"docs: .venv/bin/python benchmarks/render.py {os.path.relpath(out)} --docs docs/benchmarks.md --plots docs/_static"
    )
    return result


if __name__ == "__main__":
    main()
