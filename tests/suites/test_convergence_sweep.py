"""The convergence sweep (benchmarks/convergence.py) and its problems measure what they say.

No convergence figure is asserted here (the sweep's JSON holds them and docs/research-optimizers.md
shows them): these tests check the bookkeeping (steps to a target, the choice of the tuned learning
rate), that the problems start where they should, that every optimizer of the sweep runs, and that
the page's table and plot are what the renderer makes of the JSON the page names.
"""

import json
import os
import re
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks import convergence, problems  # noqa: E402

PAGE = os.path.join(ROOT, "docs", "research-optimizers.md")


def test_steps_to_target_counts_the_steps_taken():
    losses = np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    assert convergence.steps_to_target(losses, 0.5, 1) == 3  # the loss measured before update 3
    assert convergence.steps_to_target(losses, 0.01, 1) is None
    # the mean of the last 2: 4, 2, 0.75, 0.35, 0.15 -> first <= 0.4 after the losses of steps 3 and 4
    assert convergence.steps_to_target(losses, 0.4, 2) == 4
    assert convergence.steps_to_target(np.array([np.nan, 0.1]), 0.5, 1) == 1  # NaN never counts as reached
    # touching the target and leaving it is not reaching it: from step 4 on it stays
    assert convergence.steps_to_target(np.array([5.0, 0.1, 3.0, 2.0, 0.2, 0.1]), 0.5, 1) == 4
    assert convergence.steps_to_target(np.array([5.0, 0.1, 0.1, np.nan]), 0.5, 1) is None


def test_the_tuned_run_is_the_fastest_then_the_lowest():
    run = lambda lr, steps, final: {
        "optimizer": "o",
        "problem": "p",
        "learning_rate": lr,
        "steps_to_target": steps,
        "final_loss": final,
    }
    runs = [run(0.1, None, 0.01), run(0.01, 50, 0.2), run(0.001, 40, 0.3), run(1.0, None, None)]
    assert convergence.tuned(runs)[("o", "p")]["learning_rate"] == 0.001
    runs = [run(0.1, None, 0.05), run(0.01, None, 0.02), run(1.0, None, None)]
    assert convergence.tuned(runs)[("o", "p")]["learning_rate"] == 0.01


def test_the_generated_text_follows_its_grammar():
    text = problems.generated_text(200)
    assert text == problems.generated_text(200)
    for sentence in text.split(". "):
        sentence = sentence.rstrip(".")
        subject = next(s for s in problems.SUBJECTS if sentence.startswith(s + " "))
        verb = sentence[len(subject) + 1 :].split(" ")[0]
        plural = subject in ("two birds", "the children", "they")
        assert verb in (problems.PLURAL_VERBS if plural else problems.VERBS), sentence


@pytest.mark.parametrize("name", ["digits_mlp", "tiny_lm"])
def test_the_stochastic_problems_start_at_chance(name):
    problem = problems.PROBLEMS[name]()
    params = problem.init()
    classes = 10 if name == "digits_mlp" else len(set(problems.generated_text()))
    # small initial logits: the loss is near log(classes), on the training batch and held out
    assert abs(float(problem.loss(params, problem.batch(0))) - np.log(classes)) < 0.3
    assert abs(float(problem.eval_loss(params)) - np.log(classes)) < 0.3


def test_every_optimizer_of_the_sweep_runs_and_decreases_the_quadratic():
    problem = problems.quadratic()
    initial = float(problem.eval_loss(problem.init()))
    for name, entry in convergence.OPTIMIZERS.items():
        lr = entry.grid[len(entry.grid) // 2]
        losses, held_out = convergence.train(entry.make(lr), problem, 30, entry.eval_params)
        assert losses.shape == (30,) and losses[0] == pytest.approx(initial), name
        assert np.isfinite(held_out) and held_out < initial, f"{name} at lr {lr}: {initial} -> {held_out}"


def test_the_page_shows_what_the_json_holds():
    with open(PAGE, encoding="utf-8") as f:
        page = f.read()
    source = re.search(r"^% generated from (\S+) by benchmarks/convergence.py", page, re.MULTILINE).group(1)
    with open(os.path.join(ROOT, source), encoding="utf-8") as f:
        result = json.load(f)
    assert convergence.render_table(result) in page
    assert convergence.describe(result) in page
    names = {r["optimizer"] for r in result["runs"]}
    assert names == set(convergence.OPTIMIZERS), "the JSON is from a sweep of other optimizers: run it again"
    assert os.path.exists(os.path.join(ROOT, "docs", "_static", "research_optimizers_lm.png"))


# ----------------------------------------------------------------------------- the second set

SECTION = "## Matrix-preconditioned and newest optimizers"


def test_the_preconditioned_set_has_the_baselines_of_the_first():
    entries = convergence.PRECONDITIONED
    # the same AdamW and Muon, run in the same sweep: the comparison is within one JSON
    assert entries["adamw"] is convergence.OPTIMIZERS["adamw"] and entries["muon"] is convergence.OPTIMIZERS["muon"]
    assert set(convergence.PRECONDITIONED_PLOTTED) <= set(entries)
    assert {"adamw", "muon", "shampoo", "soap", "normuon", "mars"} <= set(convergence.PRECONDITIONED_PLOTTED)
    outs = [s.out for s in convergence.SETS.values()]
    figures = [s.figure for s in convergence.SETS.values()]
    assert len(set(outs)) == len(outs) and len(set(figures)) == len(figures)
    assert convergence.SETS["research"].out == "convergence.json"  # the first sweep's commands are unchanged
    assert convergence.set_of({"runs": []}) is convergence.SETS["research"]
    assert convergence.set_of({"set": "preconditioned", "runs": []}) is convergence.SETS["preconditioned"]


def test_every_optimizer_of_the_preconditioned_sweep_runs_and_decreases_the_quadratic():
    problem = problems.quadratic()
    initial = float(problem.eval_loss(problem.init()))
    for name, entry in convergence.PRECONDITIONED.items():
        if name in convergence.OPTIMIZERS:  # the baselines: tested above
            continue
        lr = entry.grid[len(entry.grid) // 2]
        losses, held_out = convergence.train(entry.make(lr), problem, 30, entry.eval_params)
        assert losses.shape == (30,) and losses[0] == pytest.approx(initial), name
        assert np.isfinite(held_out) and held_out < initial, f"{name} at lr {lr}: {initial} -> {held_out}"


def _fake_result(set_name, optimizer, steps):
    curve = [3.0, 1.0, 0.5, 0.4]
    run = {
        "optimizer": optimizer,
        "problem": "tiny_lm",
        "learning_rate": 0.001,
        "steps_to_target": steps,
        "final_loss": 0.4,
        "held_out_loss": 0.41,
        "curve": curve,
        "seconds": 1.0,
    }
    result = {"machine": "m", "jax": "0", "command": f"c {set_name}", "date": "d", "curve_every": 10, "runs": [run]}
    return result if set_name == "research" else {**result, "set": set_name}


def test_the_render_replaces_only_the_block_of_its_json(tmp_path):
    sources = {"research": tmp_path / "first.json", "preconditioned": tmp_path / "second.json"}
    results = {
        "research": _fake_result("research", "adamw", 11),
        "preconditioned": _fake_result("preconditioned", "soap", 22),
    }
    blocks = {}
    for name, path in sources.items():
        path.write_text(json.dumps(results[name]), encoding="utf-8")
        begin = convergence.BEGIN.format(source=os.path.relpath(path, convergence.ROOT))
        blocks[name] = f"{begin}\n\nold {name}\n\n{convergence.END}"
    page = tmp_path / "page.md"
    original = f"# page\n\n{blocks['research']}\n\nbetween\n\n{SECTION}\n\n{blocks['preconditioned']}\n\nafter\n"
    page.write_text(original, encoding="utf-8")
    convergence.main(["--render", str(sources["preconditioned"]), "--docs", str(page), "--plots", str(tmp_path)])
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"# page\n\n{blocks['research']}\n\nbetween\n\n{SECTION}\n\n"), "the other block changed"
    assert text.endswith(f"{convergence.END}\n\nafter\n") and "old preconditioned" not in text
    assert convergence.render_table(results["preconditioned"]) in text and "soap" in text
    # the figure of the set the JSON names, not the first set's
    assert (tmp_path / "preconditioned_optimizers_lm.png").exists()
    assert not (tmp_path / "research_optimizers_lm.png").exists()
    assert convergence.generated_sources(text) == [os.path.relpath(p, convergence.ROOT) for p in sources.values()]
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps(results["research"]), encoding="utf-8")
    with pytest.raises(SystemExit, match="no generated block for"):
        convergence.main(["--render", str(missing), "--docs", str(page)])
    assert page.read_text(encoding="utf-8") == text


def test_the_page_shows_each_sweep_what_its_json_holds():
    with open(PAGE, encoding="utf-8") as f:
        page = f.read()
    sources = convergence.generated_sources(page)
    assert sources == ["benchmarks/results/convergence.json", "benchmarks/results/convergence-preconditioned.json"]
    assert page.index(SECTION) < page.index(convergence.BEGIN.format(source=sources[1]))
    for source in sources:
        with open(os.path.join(ROOT, source), encoding="utf-8") as f:
            result = json.load(f)
        chosen = convergence.set_of(result)
        assert convergence.render_table(result) in page, source
        assert convergence.describe(result) in page, source
        names = {r["optimizer"] for r in result["runs"]}
        assert names == set(chosen.entries), f"{source} is from a sweep of other optimizers: run it again"
        assert f"](_static/{chosen.figure})" in page
        assert os.path.exists(os.path.join(ROOT, "docs", "_static", chosen.figure))
