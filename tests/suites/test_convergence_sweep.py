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
