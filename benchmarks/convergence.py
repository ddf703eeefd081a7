"""The convergence sweep: every research optimizer, each at its best learning rate, on four problems.

    python3 benchmarks/convergence.py                     # the whole sweep (about half an hour on 2 cores)
    python3 benchmarks/convergence.py --optimizers adamw,muon --problems tiny_lm
    python3 benchmarks/convergence.py --resume            # keep the runs already in the JSON, do the rest
    python3 benchmarks/convergence.py --render benchmarks/results/convergence-<machine>.json --docs docs/research-optimizers.md --plots docs/_static
    python3 benchmarks/convergence.py --set preconditioned    # Shampoo, SOAP, NorMuon, ... with AdamW and Muon

For each (optimizer, problem) every learning rate of the optimizer's grid is run for the problem's
step budget; the tuned rate is the one that reaches the problem's target loss, and stays there to
the end of the budget, in the fewest steps (the lowest final loss when none does). The loss that is compared with the target is the training
loss, averaged over the last ``smooth`` steps for the stochastic problems; the held-out loss is
measured on the evaluation parameters (``schedule_free_eval_params`` for the schedule-free
optimizers). The JSON keeps every run; ``--render`` turns it into the docs' table and plot.

Two sets of optimizers are swept, each into its own JSON, table and plot (``--set``): ``research``
(Optax's contrib, :data:`OPTIMIZERS`) and ``preconditioned`` (the matrix-preconditioned and newest
ones, :data:`PRECONDITIONED`, with AdamW and Muon as the baselines of the same run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import gradtx  # noqa: E402
from benchmarks import problems as P  # noqa: E402
from benchmarks.render import END, table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "% generated from {source} by benchmarks/convergence.py: do not edit by hand"


class Budget(NamedTuple):
    steps: int
    target: float
    smooth: int  # the training loss compared with the target is the mean of the last `smooth` steps


BUDGETS = {
    "quadratic": Budget(1000, 1e-6, 1),
    "rosenbrock": Budget(3000, 1e-4, 1),
    "digits_mlp": Budget(1500, 0.1, 50),
    "tiny_lm": Budget(400, 0.45, 20),
}

DECADES = tuple(float(x) for x in np.logspace(-4, 0, 9))  # 1e-4, 3e-4, ..., 1
FREE = (0.3, 1.0, 3.0)  # multipliers of a parameter-free step size
LOW = tuple(float(x) for x in np.logspace(-6, -2, 9))  # for a momentum that sums the gradients
LARGE_LM = (0.01, 0.0316, 0.1, 0.316)  # SGD's and Muon's rates on the tiny LM


class Entry(NamedTuple):
    make: Callable[[float], gradtx.GradientTransformation]
    grid: tuple[float, ...] = DECADES
    eval_params: Callable[[Any, Any], Any] | None = None  # (state, params) -> the parameters to evaluate
    lm_grid: tuple[float, ...] | None = None  # the rates tried on the tiny LM, where not the narrowed grid


def _schedule_free_eval(state, params):
    return gradtx.schedule_free_eval_params(state, params)


OPTIMIZERS: dict[str, Entry] = {
    "adamw": Entry(lambda lr: gradtx.adamw(lr, weight_decay=1e-4)),
    "sgd_momentum": Entry(lambda lr: gradtx.sgd(lr, momentum=0.9), lm_grid=LARGE_LM),
    "muon": Entry(lambda lr: gradtx.muon(lr), lm_grid=LARGE_LM),
    "schedule_free_adamw": Entry(lambda lr: gradtx.schedule_free_adamw(lr), eval_params=_schedule_free_eval),
    "schedule_free_sgd": Entry(
        lambda lr: gradtx.schedule_free_sgd(lr), eval_params=_schedule_free_eval, lm_grid=LARGE_LM
    ),
    "prodigy": Entry(lambda lr: gradtx.prodigy(lr), FREE),
    "dadapt_adamw": Entry(lambda lr: gradtx.dadapt_adamw(lr), FREE),
    "mechanize_adam": Entry(lambda lr: gradtx.mechanize(gradtx.adam(lr))),
    "cocob": Entry(lambda lr: gradtx.cocob(lr), FREE),
    "dowg": Entry(lambda lr: gradtx.dowg(lr), FREE),
    "ademamix": Entry(lambda lr: gradtx.ademamix(lr)),
    "simplified_ademamix": Entry(lambda lr: gradtx.simplified_ademamix(lr), LOW, lm_grid=LOW[2:6]),
    "adopt": Entry(lambda lr: gradtx.adopt(lr)),
    "madgrad": Entry(lambda lr: gradtx.madgrad(lr)),
    "acprop": Entry(lambda lr: gradtx.acprop(lr)),
    "momo": Entry(lambda lr: gradtx.momo(lr), FREE),
    "momo_adam": Entry(lambda lr: gradtx.momo_adam(lr)),  # its rate caps Adam's step: not a multiplier
    "sophia": Entry(lambda lr: gradtx.sophia(lr)),
    "sam_adam": Entry(lambda lr: gradtx.sam(gradtx.adam(lr), gradtx.chain(gradtx.normalize(), gradtx.sgd(0.05)))),
    "galore_adam": Entry(lambda lr: gradtx.galore(lr, rank=8, update_proj_gap=50)),
}

# The page's comparison plot: these optimizers on the tiny LM, each at its tuned learning rate.
PLOTTED = ("adamw", "muon", "schedule_free_adamw", "prodigy", "ademamix")

SIGN_LM = DECADES[:4]  # 1e-4 ... 3e-3: Lion's sign steps on the tiny LM
# Shampoo, SOAP and PSGD Kron take 7 to 10 times AdamW's time on the tiny LM: four rates, three for Kron
KRON_LM = DECADES[2:5]  # 1e-3 ... 1e-2
SOAP_LM = DECADES[2:6]  # 1e-3 ... 3e-2
SHAMPOO_LM = DECADES[1:5]  # 3e-4 ... 1e-2

# The tiny LM's leaves by the names Adam-mini's rules look for: the embedding and position tables
# get one second moment per row, the unembedding one per token, and the fused qkv, attention
# projection and MLP kernels one per output neuron (finer than the paper's one per head for the
# queries and keys, which share the fused kernel's last axis with the values here).
_ADAM_MINI_NAMES = {"embd_names": ("embed", "position"), "mlp_names": ("qkv", "proj", "up", "down")}

# The matrix-preconditioned and newest optimizers, in one run with AdamW and Muon (the same
# entries as above), so that the comparison is within one sweep.
PRECONDITIONED: dict[str, Entry] = {
    "adamw": OPTIMIZERS["adamw"],
    "muon": OPTIMIZERS["muon"],
    # Shampoo grafted onto RMSProp with an averaged momentum (so that its rates are about Adam's;
    # the grafted RMSProp has no bias correction, hence beta2 0.99), 64-wide blocks (the LM's kernels
    # are 64 x 192, 64 x 256, ...: square 64 x 64 blocks), the roots refreshed every 10 steps
    "shampoo": Entry(
        lambda lr: gradtx.shampoo(
            lr,
            block_size=64,
            beta2=0.99,
            graft_type="rmsprop",
            start_preconditioning_step=5,
            preconditioning_compute_steps=10,
            moving_average_for_momentum=True,
        ),
        lm_grid=SHAMPOO_LM,
    ),
    "soap": Entry(lambda lr: gradtx.soap(lr), lm_grid=SOAP_LM),
    "normuon": Entry(lambda lr: gradtx.normuon(lr)),  # matrix updates of RMS 0.2: AdamW's rates
    "kron": Entry(lambda lr: gradtx.kron(lr), lm_grid=KRON_LM),
    "mars": Entry(lambda lr: gradtx.mars(lr, lr_1d=lr)),  # one rate for the matrices and the AdamW leaves
    "laprop": Entry(lambda lr: gradtx.laprop(lr)),
    "adam_mini": Entry(lambda lr: gradtx.adam_mini(lr, **_ADAM_MINI_NAMES)),
    "adamw_cautious": Entry(lambda lr: gradtx.adamw(lr, weight_decay=1e-4, cautious=True)),
    "lion_cautious": Entry(lambda lr: gradtx.lion(lr, cautious=True), lm_grid=SIGN_LM),
    # a Hessian-vector product of the batch's loss (train's obj_fn=) at every step; its default rate is 0.15
    "adahessian": Entry(lambda lr: gradtx.adahessian(lr), lm_grid=DECADES[4:8]),
}
PRECONDITIONED_PLOTTED = ("adamw", "muon", "shampoo", "soap", "normuon", "kron", "mars")


class Set(NamedTuple):
    entries: dict[str, Entry]
    plotted: tuple[str, ...]
    out: str  # the JSON, under benchmarks/results/
    figure: str  # the plot, in --plots


SETS = {
    "research": Set(OPTIMIZERS, PLOTTED, "convergence.json", "research_optimizers_lm.png"),
    "preconditioned": Set(
        PRECONDITIONED, PRECONDITIONED_PLOTTED, "convergence-preconditioned.json", "preconditioned_optimizers_lm.png"
    ),
}


def set_of(result: dict) -> Set:
    """The set a sweep's JSON is of (the first sweep's JSON names none: ``research``)."""
    return SETS[result.get("set", "research")]


def grid(entry: Entry, problem: str) -> tuple[float, ...]:
    """The learning rates tried: the entry's grid, narrowed on the tiny LM, whose runs are the costly
    ones, to [1e-3, 3e-2] or to the entry's ``lm_grid`` (a tuned rate at an end is marked in the table)."""
    if problem != "tiny_lm" or entry.grid is FREE:
        return entry.grid
    if entry.lm_grid is not None:
        return entry.lm_grid
    return tuple(lr for lr in entry.grid if 0.99e-3 <= lr <= 3.2e-2)


def train(tx: gradtx.GradientTransformation, problem: P.Problem, steps: int, eval_params=None):
    """``steps`` steps from the problem's start; the training loss of every step and the held-out
    loss at the end. Every extra argument an optimizer may ask for is passed (the loss value, the
    loss function of this batch, its gradient function)."""

    def step(carry, index):
        params, state = carry
        batch = problem.batch(index)
        loss_of = lambda p: problem.loss(p, batch)
        value, grad = jax.value_and_grad(loss_of)(params)
        updates, state = tx.update(
            grad,
            state,
            params,
            value=value,
            grad=grad,
            value_fn=loss_of,
            obj_fn=loss_of,
            grad_fn=lambda p, _: jax.grad(loss_of)(p),
        )
        return (gradtx.apply_updates(params, updates), state), value

    @jax.jit
    def run(params):
        (params, state), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
        final = params if eval_params is None else eval_params(state, params)
        return losses, problem.eval_loss(final)

    losses, held_out = run(problem.init())
    return np.asarray(losses, np.float64), float(held_out)


def steps_to_target(losses: np.ndarray, target: float, smooth: int) -> int | None:
    """The step count from which on the mean of the last ``smooth`` training losses stays at most
    ``target`` to the end of the run (the loss of step i is measured before update i, so reaching it
    at index i took i steps); a run that touches the target and leaves it again has not reached it."""
    finite = np.where(np.isfinite(losses), losses, np.inf)
    means = np.convolve(finite, np.ones(smooth) / smooth, mode="valid") if smooth > 1 else finite
    above = np.flatnonzero(means > target)
    first = 0 if above.size == 0 else int(above[-1]) + 1
    return None if first >= means.size else first + smooth - 1


def sweep(
    names, problem_names, curve_every: int = 10, done=(), save=lambda runs: None, entries: dict[str, Entry] = OPTIMIZERS
) -> list[dict]:
    """Every run not in ``done`` (earlier runs, kept and skipped); ``save(runs)`` after each optimizer's runs."""
    runs = list(done)
    finished = {(r["optimizer"], r["problem"], r["learning_rate"]) for r in runs}
    for problem_name in problem_names:
        problem, budget = P.PROBLEMS[problem_name](), BUDGETS[problem_name]
        for name in names:
            entry = entries[name]
            for lr in grid(entry, problem_name):
                if (name, problem_name, lr) in finished:
                    continue
                start = time.perf_counter()
                losses, held_out = train(entry.make(lr), problem, budget.steps, entry.eval_params)
                reached = steps_to_target(losses, budget.target, budget.smooth)
                final = float(np.mean(losses[-budget.smooth :]))
                runs.append(
                    {
                        "optimizer": name,
                        "problem": problem_name,
                        "learning_rate": lr,
                        "steps_to_target": reached,
                        "final_loss": final if np.isfinite(final) else None,
                        "held_out_loss": held_out if np.isfinite(held_out) else None,
                        "curve": [float(x) if np.isfinite(x) else None for x in losses[::curve_every]],
                        "seconds": round(time.perf_counter() - start, 2),
                    }
                )
                print(f"{problem_name:11s} {name:20s} lr={lr:<8.3g} steps={reached} final={final:.4g}", flush=True)
            save(runs)
    return runs


def tuned(runs: list[dict]) -> dict[tuple[str, str], dict]:
    """(optimizer, problem) -> its best run: fewest steps to the target, then lowest final loss."""
    best: dict[tuple[str, str], dict] = {}
    for run in runs:
        key = (run["optimizer"], run["problem"])
        rank = lambda r: (
            r["steps_to_target"] is None,
            r["steps_to_target"] or 0,
            np.inf if r["final_loss"] is None else r["final_loss"],
        )
        if key not in best or rank(run) < rank(best[key]):
            best[key] = run
    return best


def render_table(result: dict) -> str:
    entries = set_of(result).entries
    best = tuned(result["runs"])
    problems = [p for p in BUDGETS if any(k[1] == p for k in best)]
    names = list(dict.fromkeys(r["optimizer"] for r in result["runs"]))
    header = ["optimizer"] + [f"{p}: lr, steps" for p in problems] + ["tiny_lm held-out"] * ("tiny_lm" in problems)
    lines = []
    for name in names:
        cells = [name]
        for p in problems:
            run = best.get((name, p))
            if run is None:
                cells.append("")
                continue
            steps = "-" if run["steps_to_target"] is None else str(run["steps_to_target"])
            tried = grid(entries[name], p) if name in entries else ()
            edge = "*" if run["learning_rate"] in (min(tried, default=None), max(tried, default=None)) else ""
            cells.append(f"{run['learning_rate']:.2g}{edge}, {steps}")
        if "tiny_lm" in problems:
            run = best.get((name, "tiny_lm"))
            cells.append("" if run is None or run["held_out_loss"] is None else f"{run['held_out_loss']:.3f}")
        lines.append(cells)
    targets = ", ".join(
        f"{p} {BUDGETS[p].target:g} within {BUDGETS[p].steps} steps"
        + (f" (mean of {BUDGETS[p].smooth})" if BUDGETS[p].smooth > 1 else "")
        for p in problems
    )
    return (
        table(header, lines)
        + f"\n\nTargets: {targets}. `-`: not reached; its lr is the one with the lowest final loss. `*`: the best rate is at an end of the grid tried."
    )


def generated_sources(text: str) -> list[str]:
    """The JSON files the generated blocks of a page were made from, in page order."""
    pattern = re.escape(BEGIN).replace(re.escape("{source}"), r"(\S+)")
    return re.findall("^" + pattern + "$", text, re.MULTILINE)


def render_docs(result: dict, source: str, page: str) -> None:
    """Replaces the page's generated block made from ``source`` (a page may hold one per JSON)."""
    with open(page, encoding="utf-8") as f:
        text = f.read()
    begin = BEGIN.format(source=source)
    pattern = re.compile("^" + re.escape(begin) + "$.*?^" + re.escape(END) + "$", re.DOTALL | re.MULTILINE)
    if not pattern.search(text):
        raise SystemExit(f"{page} has no generated block for {source} (a '{begin}' ... '{END}' block)")
    body = f"{begin}\n\n{describe(result)}\n\n{render_table(result)}\n\n{END}"
    with open(page, "w", encoding="utf-8") as f:
        f.write(pattern.sub(lambda _: body, text, count=1))


def describe(result: dict) -> str:
    return f"Machine: {result['machine']}; JAX {result['jax']}; command: `{result['command']}`; {result['date']}."


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = tuned(result["runs"])
    every = result["curve_every"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in set_of(result).plotted:
        run = best.get((name, "tiny_lm"))
        if run is None:
            continue
        curve = np.array([np.nan if x is None else x for x in run["curve"]])
        ax.plot(np.arange(len(curve)) * every, curve, label=f"{name} (lr {run['learning_rate']:.2g})")
    ax.axhline(BUDGETS["tiny_lm"].target, color="gray", linestyle=":", linewidth=1)
    ax.set(xlabel="step", ylabel="training loss (nats per character)", title="tiny transformer LM on generated text")
    ax.set_ylim(top=3.5)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--set", default="research", choices=sorted(SETS), help="the optimizers swept (default research)"
    )
    parser.add_argument("--optimizers", default=None, help="a comma-separated subset of the set's (default all)")
    parser.add_argument("--problems", default=",".join(BUDGETS))
    parser.add_argument("--out", default=None)
    parser.add_argument("--render", default=None, help="a JSON to render instead of running")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --out and skip them")
    parser.add_argument("--docs", default=None)
    parser.add_argument("--plots", default=None)
    args = parser.parse_args(argv)
    if args.render:
        with open(args.render, encoding="utf-8") as f:
            result = json.load(f)
        source = os.path.relpath(args.render, ROOT)
    else:
        entries = SETS[args.set].entries
        names = [n for n in (args.optimizers or ",".join(entries)).split(",") if n]
        unknown = sorted(set(names) - set(entries)) + sorted(set(args.problems.split(",")) - set(BUDGETS))
        if unknown:
            parser.error(f"unknown optimizers or problems: {unknown}")
        machine = platform.processor() or platform.machine()
        out = args.out or os.path.join(ROOT, "benchmarks", "results", SETS[args.set].out)
        done = []
        if args.resume and os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                done = [
                    r
                    for r in json.load(f)["runs"]
                    if r["optimizer"] in names and r["learning_rate"] in grid(entries[r["optimizer"]], r["problem"])
                ]
        given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--resume"]
        result = {
            "machine": f"{machine}, {os.cpu_count()} cores, {jax.devices()[0].platform}",
            "jax": jax.__version__,
            "command": ("python3 benchmarks/convergence.py " + shlex.join(given)).strip(),
            "date": datetime.date.today().isoformat(),
            "curve_every": 10,
            "runs": [],
        }
        if args.set != "research":  # the first sweep's JSON names no set
            result["set"] = args.set

        def save(runs):
            with open(out, "w", encoding="utf-8") as f:
                json.dump({**result, "runs": runs}, f, indent=1)

        result["runs"] = sweep(names, args.problems.split(","), done=done, save=save, entries=entries)
        source = os.path.relpath(out, ROOT)
    print(render_table(result))
    if args.docs:
        render_docs(result, source, args.docs)
    if args.plots:
        plot(result, os.path.join(args.plots, set_of(result).figure))
    return result


if __name__ == "__main__":
    main()
