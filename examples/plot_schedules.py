"""Draw every schedule in gradtx.schedules, one small panel each, to docs/_static/schedules.png.

    python examples/plot_schedules.py            # with gradtx installed (pip install -e .)

Each schedule is evaluated on an array of steps at once: schedules are elementwise.
"""

from pathlib import Path

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gradtx import schedules as S  # noqa: E402

STEPS = 1000
OUT = Path(__file__).resolve().parents[1] / "docs" / "_static" / "schedules.png"

# (panel title, {legend label: schedule}); the first curve of each panel is solid, the others dashed.
PANELS = [
    ("constant_schedule", {"value=1": S.constant_schedule(1.0)}),
    (
        "linear_schedule",
        {"begin=200, steps=600": S.linear_schedule(1.0, 0.1, transition_steps=600, transition_begin=200)},
    ),
    (
        "polynomial_schedule",
        {
            "power=2": S.polynomial_schedule(1.0, 0.0, power=2, transition_steps=800),
            "power=0.5": S.polynomial_schedule(1.0, 0.0, power=0.5, transition_steps=800),
        },
    ),
    (
        "exponential_decay",
        {
            "rate=0.7 per 100": S.exponential_decay(1.0, transition_steps=100, decay_rate=0.7),
            "staircase": S.exponential_decay(1.0, transition_steps=100, decay_rate=0.7, staircase=True),
        },
    ),
    ("cosine_decay_schedule", {"alpha=0.1": S.cosine_decay_schedule(1.0, decay_steps=800, alpha=0.1)}),
    ("warmup_constant_schedule", {"warmup=200": S.warmup_constant_schedule(0.0, 1.0, warmup_steps=200)}),
    (
        "warmup_cosine_decay_schedule",
        {
            "exponent=1": S.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=100, decay_steps=1000, end_value=0.05),
            "exponent=2": S.warmup_cosine_decay_schedule(0.0, 1.0, 100, 1000, end_value=0.05, exponent=2.0),
        },
    ),
    (
        "warmup_exponential_decay_schedule",
        {
            "warmup=100, rate=0.7": S.warmup_exponential_decay_schedule(
                0.0, 1.0, 100, transition_steps=100, decay_rate=0.7
            ),
        },
    ),
    (
        "piecewise_constant_schedule",
        {
            "{300: 0.5, 600: 0.2}": S.piecewise_constant_schedule(1.0, {300: 0.5, 600: 0.2}),
        },
    ),
    (
        "piecewise_interpolate_schedule",
        {
            "cosine": S.piecewise_interpolate_schedule("cosine", 1.0, {300: 0.5, 600: 0.2}),
            "linear": S.piecewise_interpolate_schedule("linear", 1.0, {300: 0.5, 600: 0.2}),
        },
    ),
    ("linear_onecycle_schedule", {"defaults": S.linear_onecycle_schedule(STEPS, peak_value=1.0)}),
    ("cosine_onecycle_schedule", {"defaults": S.cosine_onecycle_schedule(STEPS, peak_value=1.0)}),
    (
        "sgdr_schedule",
        {
            "cycles 200, 300, 500": S.sgdr_schedule(
                [
                    dict(init_value=0.0, peak_value=1.0, warmup_steps=20, decay_steps=200),
                    dict(init_value=0.0, peak_value=0.8, warmup_steps=20, decay_steps=300),
                    dict(init_value=0.0, peak_value=0.6, warmup_steps=20, decay_steps=500),
                ]
            ),
        },
    ),
    (
        "join_schedules",
        {
            "linear | cosine | constant": S.join_schedules(
                [S.linear_schedule(0.0, 1.0, 100), S.cosine_decay_schedule(1.0, 400), S.constant_schedule(0.3)],
                [100, 500],
            ),
        },
    ),
    ("step_decay_schedule (StepLR)", {"step=250, gamma=0.5": S.step_decay_schedule(1.0, step_size=250, gamma=0.5)}),
    (
        "multistep_decay_schedule (MultiStepLR)",
        {
            "[300, 600, 800], gamma=0.3": S.multistep_decay_schedule(1.0, milestones=[300, 600, 800], gamma=0.3),
        },
    ),
    (
        "cyclic_schedule (CyclicLR)",
        {
            "triangular": S.cyclic_schedule(0.1, 1.0, step_size_up=100),
            "triangular2": S.cyclic_schedule(0.1, 1.0, step_size_up=100, mode="triangular2"),
            "exp_range": S.cyclic_schedule(0.1, 1.0, step_size_up=100, mode="exp_range", gamma=0.998),
        },
    ),
    (
        "cosine_annealing_warm_restarts_schedule\n(CosineAnnealingWarmRestarts)",
        {
            "period=70, mult=2": S.cosine_annealing_warm_restarts_schedule(
                1.0, period=70, period_mult=2, min_value=0.05
            ),
        },
    ),
    ("inverse_sqrt_schedule", {"warmup=100": S.inverse_sqrt_schedule(1.0, warmup_steps=100)}),
    (
        "warmup_stable_decay_schedule",
        {
            "linear": S.warmup_stable_decay_schedule(1.0, 100, 600, 300, decay_type="linear"),
            "cosine": S.warmup_stable_decay_schedule(1.0, 100, 600, 300, decay_type="cosine"),
            "sqrt": S.warmup_stable_decay_schedule(1.0, 100, 600, 300, decay_type="sqrt"),
        },
    ),
]


def main():
    steps = jnp.arange(STEPS + 1)
    rows, cols = 4, 5
    fig, axes = plt.subplots(rows, cols, figsize=(17, 11.5), sharex=True)
    for ax, (title, curves) in zip(axes.flat, PANELS):
        for i, (label, schedule) in enumerate(curves.items()):
            ax.plot(steps, schedule(steps), label=label, lw=1.6, ls="-" if i == 0 else "--")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.set_ylabel("value", fontsize=9)
        ax.set_ylim(-0.05, 1.25)
        ax.tick_params(labelsize=8, labelbottom=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="best", framealpha=0.85)
    for ax in axes.flat[len(PANELS) :]:
        ax.axis("off")
    fig.suptitle("gradtx schedules (value against step)", fontsize=13)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=72)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
