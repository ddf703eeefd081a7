"""Tables and plots from a benchmark JSON (written by benchmarks/run.py).

    python3 benchmarks/render.py RESULTS.json            # print the Markdown tables
    python3 benchmarks/render.py RESULTS.json --docs docs/benchmarks.md --plots docs/_static

``--docs`` replaces the generated part of the page made from the same JSON (between its
``% generated from RESULTS.json`` and ``% end of generated text`` lines; a page may hold one such
part per JSON, e.g. the main run and the research optimizers' run); ``--plots`` writes benchmarks_params.png and
benchmarks_leaves.png (Adam: step time against parameter count, time per parameter against leaf
count, one line per library).
"""

from __future__ import annotations

import argparse
import json
import os
import re

LIBRARY_NAMES = ("floor", "gradtx", "optax", "torch-foreach", "torch-fused")
BEGIN = "% generated from {source} by benchmarks/render.py: do not edit by hand"
END = "% end of generated text"
STATUSES = ("n/a", "unsupported", "skipped")


def ms(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}"


def step_cell(row: dict) -> str:
    return ms(row["step_ms"]) if row["status"] == "ok" else row["status"]


def table(header: list[str], lines: list[list[str]]) -> str:
    """A Markdown pipe table, padded so that it reads as text too; numeric columns right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    numeric = [all(re.fullmatch(r"[-\d., /]*", c) or c in STATUSES for c in column) for column in zip(*lines)]
    pad = lambda cells: [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
    rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [pad(header), rule, *map(pad, lines)])


def full_table(result: dict) -> str:
    """Every row: tree x optimizer x library, with every figure."""
    header = [
        "tree",
        "optimizer",
        "library",
        "step ms",
        "compile s",
        "state B/param",
        "XLA B/param",
        "x floor",
        "x optax",
        "x torch-fused",
        "note",
    ]
    fixed = lambda x, digits: "" if x is None else f"{x:.{digits}f}"
    lines = [
        [
            r["tree"],
            r["optimizer"],
            r["library"],
            step_cell(r),
            fixed(r["compile_s"], 2),
            fixed(r["state_bytes_per_param"], 2),
            fixed(r["xla_bytes_per_param"], 1),
            ratio(r["x_floor"]),
            ratio(r["x_optax"]),
            ratio(r["x_torch_fused"]),
            r["note"],
        ]
        for r in result["rows"]
    ]
    return table(header, lines)


def summary_table(result: dict) -> str:
    """Step times side by side: one line per tree and optimizer, one column per library."""
    libraries = [name for name in LIBRARY_NAMES if any(r["library"] == name for r in result["rows"])]
    groups: dict[tuple, dict] = {}
    for r in result["rows"]:
        groups.setdefault((r["tree"], r["optimizer"]), {})[r["library"]] = r
    compiled = [name for name in ("floor", "gradtx", "optax") if name in libraries]
    header = [
        "tree",
        "optimizer",
        *(f"{name} ms" for name in libraries),
        "gradtx x floor",
        "gradtx x optax",
        "gradtx x torch-fused",
        f"XLA B/param ({', '.join(compiled)})",
    ]
    lines = []
    for (tree, optimizer), by_library in groups.items():
        ours = by_library.get("gradtx", {})
        xla = [by_library.get(name, {}).get("xla_bytes_per_param") for name in compiled]
        lines.append(
            [
                tree,
                optimizer,
                *(step_cell(by_library[name]) if name in by_library else "" for name in libraries),
                *(ratio(ours.get(field)) for field in ("x_floor", "x_optax", "x_torch_fused")),
                " / ".join("-" if x is None else f"{x:.0f}" for x in xla),
            ]
        )
    return table(header, lines)


# Each matrix-preconditioned method's own refresh interval: Shampoo's preconditioning_compute_steps (1),
# SOAP's precondition_frequency (10), and for Kron the reciprocal of the probability its default schedule
# anneals to (0.03: once in about 33 steps).
REFRESH_INTERVALS = {"shampoo": 1, "soap": 10, "kron": 1 / 0.03}


def preconditioned_table(result: dict) -> str | None:
    """The matrix-preconditioned rows: a plain step, a refreshing step, and their average at the method's
    own interval, against gradtx's AdamW on the same tree; None when the run has no such rows."""
    ours = {(r["tree"], r["optimizer"]): r for r in result["rows"] if r["library"] == "gradtx" and r["status"] == "ok"}
    header = [
        "tree",
        "optimizer",
        "plain step ms",
        "refresh step ms",
        "refresh every",
        "average ms",
        "x AdamW",
        "compile s (plain / refresh)",
        "state B/param",
    ]
    lines = []
    for (tree, name), plain in ours.items():
        refresh = ours.get((tree, f"{name}_refresh"))
        if refresh is None:
            continue
        interval = REFRESH_INTERVALS[name]
        average = plain["step_ms"] + (refresh["step_ms"] - plain["step_ms"]) / interval
        adamw = ours.get((tree, "adamw"))
        lines.append(
            [
                tree,
                name,
                ms(plain["step_ms"]),
                ms(refresh["step_ms"]),
                f"{interval:.0f}",
                ms(average),
                ratio(average / adamw["step_ms"]) if adamw else "",
                f"{plain['compile_s']:.1f} / {refresh['compile_s']:.1f}",
                f"{plain['state_bytes_per_param']:.1f}",
            ]
        )
    return table(header, lines) if lines else None


def machine_text(result: dict) -> str:
    m = result["machine"]
    versions = ", ".join(f"{name} {m[name]}" for name in ("jax", "jaxlib", "optax", "torch", "numpy") if m.get(name))
    trees = "; ".join(
        f"`{name}` {t['leaves']:,} {'leaf' if t['leaves'] == 1 else 'leaves'}, "
        f"{t['params']:,} parameters ({t['description']})"
        for name, t in result["trees"].items()
    )
    return "\n".join(
        [
            f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}",
            f"- XLA: {m['xla_backend']} ({m['xla_device']}); torch threads: {m['torch_threads']}; load average "
            f"(1, 5, 15 min) {m['load_average']} before the run, {m['load_average_after']} after",
            f"- Software: Python {m['python']}, gradtx {m['gradtx']} (git {m['gradtx_git']}), {versions}",
            f"- Run: `{result['command']}`, {result['date']}, {result['runtime_s']:.0f} s in all; "
            f"median of {result['steps']} steps after {result['warmup']} warm-up steps",
            f"- Trees: {trees}",
        ]
    )


def docs_section(result: dict, source: str) -> str:
    """The generated part of docs/benchmarks.md, between its markers."""
    return "\n\n".join(
        [
            BEGIN.format(source=source),
            machine_text(result),
            "### Step time\n\nMilliseconds per step; gradtx's time over the floor's, Optax's and fused torch's; and the "
            "bytes per parameter that XLA's cost model counts in the floor's, gradtx's and Optax's compiled steps.",
            summary_table(result),
            *preconditioned_section(result),
            "### All figures",
            full_table(result),
            END,
        ]
    )


def preconditioned_section(result: dict) -> list[str]:
    text = preconditioned_table(result)
    if text is None:
        return []
    return [
        "### Matrix-preconditioned steps\n\nA plain step (the preconditioner kept) and a refreshing one "
        "(Shampoo's inverse roots, SOAP's eigenbases, Kron's factors recomputed), timed apart; their average "
        "at the method's own interval, and that average over gradtx's AdamW step on the same tree.",
        text,
    ]


def generated_sources(text: str) -> list[str]:
    """The JSON files the generated parts of a page were made from, in page order."""
    pattern = re.escape(BEGIN).replace(re.escape("{source}"), r"(\S+)")
    return re.findall("^" + pattern + "$", text, re.MULTILINE)


def update_docs(path: str, result: dict, source: str) -> None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    pattern = re.compile(re.escape(BEGIN.format(source=source)) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(
            f"{path} has no generated part for {source} (a '{BEGIN.format(source=source)}' ... '{END}' block)"
        )
    with open(path, "w", encoding="utf-8") as f:
        f.write(pattern.sub(lambda _: docs_section(result, source), text))


def plots(result: dict, directory: str, optimizer: str = "adam") -> list[str]:
    """Two figures for ``optimizer``: step time against parameters, time per parameter against leaves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["optimizer"] == optimizer and r["status"] == "ok"]
    figures = {
        "benchmarks_params.png": ("params", "parameters", lambda r: r["step_ms"], "step time (ms)"),
        "benchmarks_leaves.png": (
            "leaves",
            "leaves",
            lambda r: r["step_ms"] * 1e6 / r["params"],
            "time per parameter (ns)",
        ),
    }
    paths = []
    for filename, (x_field, x_label, y, y_label) in figures.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for library in LIBRARY_NAMES:
            points = sorted((r[x_field], y(r), r["tree"]) for r in rows if r["library"] == library)
            if points:
                ax.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    "o",
                    label=library,
                    linestyle=":" if library == "floor" else "-",
                    color="black" if library == "floor" else None,
                )
        for x, value, tree in sorted({(r[x_field], y(r), r["tree"]) for r in rows if r["library"] == "floor"}):
            ax.annotate(tree, (x, value), textcoords="offset points", xytext=(4, -12), fontsize=8)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel=x_label,
            ylabel=y_label,
            title=f"{optimizer}: {y_label} against {x_label}",
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        paths.append(os.path.join(directory, filename))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def progress(row: dict) -> str:
    """One line per configuration while run.py works."""
    if row["status"] != "ok":
        return f"{row['optimizer']:<10} {row['library']:<14} {row['status']}: {row['note']}"
    compile_s = "" if row["compile_s"] is None else f"  compile {row['compile_s']:.2f} s"
    return (
        f"{row['optimizer']:<10} {row['library']:<14} {ms(row['step_ms']):>7} ms{compile_s}"
        f"  state {row['state_bytes_per_param']:.2f} B/param  {row['note']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a JSON file written by benchmarks/run.py")
    parser.add_argument("--docs", help="a page whose generated part to replace (docs/benchmarks.md)")
    parser.add_argument("--plots", help="a folder to write the two PNG figures into (docs/_static)")
    args = parser.parse_args(argv)
    with open(args.results) as f:
        result = json.load(f)
    source = os.path.relpath(args.results, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if args.docs:
        update_docs(args.docs, result, source)
        print(f"updated {args.docs}")
    if args.plots:
        print("wrote " + ", ".join(plots(result, args.plots)))
    if not (args.docs or args.plots):
        print(summary_table(result) + "\n\n" + full_table(result))


if __name__ == "__main__":
    main()
