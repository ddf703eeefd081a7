"""Schedules: each one against its closed form, written here in plain Python from the definition.

Every schedule is checked at many steps (0, each boundary, one step either side of it, a
fractional step inside each phase, far beyond the end) four ways: a Python int and a Python
float eagerly, and a traced int32 and a traced float32 under ``jax.jit`` (compiled once per
dtype, then called on every step).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx import schedules as S

FAR = 10**6  # "far beyond the end"; still an int32 under jit


def steps_around(*points):
    """0, every point, one step either side of it, half a step after it, and FAR."""
    steps = {0, FAR}
    for p in points:
        steps |= {p - 1, p, p + 1, p + 0.5}
    return sorted(s for s in steps if s >= 0)


def check(schedule, reference, steps):
    expected = np.array([reference(t) for t in steps], dtype=np.float64)
    atol = 1e-6 * max(1.0, float(np.max(np.abs(expected))))
    jitted = jax.jit(schedule)
    ints = [i for i, t in enumerate(steps) if float(t).is_integer()]
    ways = {
        "eager int": (ints, lambda t: schedule(int(t))),
        "eager float": (range(len(steps)), lambda t: schedule(float(t))),
        "jit int32": (ints, lambda t: jitted(jnp.asarray(int(t), jnp.int32))),
        "jit float32": (range(len(steps)), lambda t: jitted(jnp.asarray(t, jnp.float32))),
    }
    for way, (index, call) in ways.items():
        got = []
        for i in index:
            value = call(steps[i])
            assert isinstance(value, jax.Array) and value.shape == (), (way, steps[i], value)
            got.append(float(value))
        np.testing.assert_allclose(
            got, expected[list(index)], rtol=2e-5, atol=atol, err_msg=f"{way} at steps {[steps[i] for i in index]}"
        )


def lerp(a, b, frac):
    return a + (b - a) * frac


def half_cosine(a, b, frac):
    """From a (frac=0) to b (frac=1) along half a cosine."""
    return b + (a - b) * (1 + math.cos(math.pi * frac)) / 2


# ---------------------------------------------------------------- Optax-named schedules


def test_constant_schedule():
    check(S.constant_schedule(0.3), lambda t: 0.3, steps_around(5))


@pytest.mark.parametrize("power", [1, 2, 0.5])
def test_polynomial_schedule(power):
    init, end, T, B = 2.0, 0.1, 20, 5

    def ref(t):
        if t < B:
            return init
        if t > B + T:
            return end
        return end + (init - end) * (1 - (t - B) / T) ** power

    check(S.polynomial_schedule(init, end, power, T, transition_begin=B), ref, steps_around(B, B + 10, B + T))


def test_linear_schedule():
    ref = lambda t: lerp(1.0, -1.0, min(max(t - 3, 0), 8) / 8)
    check(S.linear_schedule(1.0, -1.0, transition_steps=8, transition_begin=3), ref, steps_around(3, 7, 11))
    check(S.linear_schedule(0.0, 1.0, 10), lambda t: min(t, 10) / 10, steps_around(10))


@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("rate,end", [(0.5, None), (0.5, 0.1), (2.0, None), (2.0, 5.0)])
def test_exponential_decay(staircase, rate, end):
    init, T, B = 1.0, 4, 3

    def ref(t):
        if t <= B:
            value = init
        else:
            p = (t - B) / T
            value = init * rate ** (math.floor(p) if staircase else p)
        if end is not None:
            value = max(value, end) if rate < 1 else min(value, end)
        return value

    sched = S.exponential_decay(init, T, rate, transition_begin=B, staircase=staircase, end_value=end)
    check(sched, ref, [s for s in steps_around(B, B + 4, B + 8, B + 12, 40) if s != FAR] + [200])


@pytest.mark.parametrize("alpha,exponent", [(0.0, 1.0), (0.1, 1.0), (0.2, 2.0)])
def test_cosine_decay_schedule(alpha, exponent):
    D = 16
    ref = lambda t: 3.0 * (alpha + (1 - alpha) * (0.5 * (1 + math.cos(math.pi * min(t, D) / D))) ** exponent)
    check(S.cosine_decay_schedule(3.0, D, alpha=alpha, exponent=exponent), ref, steps_around(4, 8, D))


def test_warmup_constant_schedule():
    ref = lambda t: lerp(0.1, 1.0, t / 5) if t < 5 else 1.0
    check(S.warmup_constant_schedule(0.1, 1.0, 5), ref, steps_around(2, 5))
    check(S.warmup_constant_schedule(0.1, 1.0, 0), lambda t: 1.0, steps_around(1))


@pytest.mark.parametrize("W,D,end,exponent", [(5, 25, 0.0, 1.0), (5, 25, 0.05, 2.0), (0, 10, 0.1, 1.0)])
def test_warmup_cosine_decay_schedule(W, D, end, exponent):
    init, peak = 0.01, 1.0

    def ref(t):
        if t < W:
            return lerp(init, peak, t / W)
        s = min(t - W, D - W) / (D - W)
        return end + (peak - end) * (0.5 * (1 + math.cos(math.pi * s))) ** exponent

    sched = S.warmup_cosine_decay_schedule(init, peak, W, D, end_value=end, exponent=exponent)
    check(sched, ref, steps_around(W, (W + D) // 2, D))


@pytest.mark.parametrize("staircase,end", [(False, None), (True, 0.2)])
def test_warmup_exponential_decay_schedule(staircase, end):
    init, peak, W, T, rate, B = 0.0, 1.0, 4, 3, 0.5, 2

    def ref(t):
        if t < W:
            return lerp(init, peak, t / W)
        t -= W  # the decay counts its steps from the end of the warmup
        if t <= B:
            return peak
        p = (t - B) / T
        value = peak * rate ** (math.floor(p) if staircase else p)
        return value if end is None else max(value, end)

    sched = S.warmup_exponential_decay_schedule(init, peak, W, T, rate, B, staircase, end)
    check(sched, ref, steps_around(W, W + B, W + B + T, W + B + 2 * T, 50))


def test_piecewise_constant_schedule():
    scales = {30: 0.5, 10: 0.1, 20: 2.0}  # any order: a dict has no order that matters
    ref = lambda t: 2.0 * math.prod(s for b, s in scales.items() if t >= b)
    check(S.piecewise_constant_schedule(2.0, scales), ref, steps_around(10, 20, 30))
    check(S.piecewise_constant_schedule(2.0, {0: 0.5}), lambda t: 1.0, steps_around(1))
    check(S.piecewise_constant_schedule(2.0), lambda t: 2.0, steps_around(1))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("scales", [{8: 0.5, 4: 3.0, 20: 0.0}, {0: 2.0, 6: 0.25}, {}])
def test_piecewise_interpolate_schedule(kind, scales):
    blend = lerp if kind == "linear" else half_cosine

    def ref(t):
        start, value = 0, 1.5
        for boundary, scale in sorted(scales.items()):
            target = value * scale
            if t < boundary:
                return blend(value, target, (t - start) / (boundary - start))
            start, value = boundary, target
        return value

    check(S.piecewise_interpolate_schedule(kind, 1.5, scales), ref, steps_around(*scales))


def test_linear_onecycle_schedule():
    T, peak, div, final_div = 100, 2.0, 20.0, 1e3
    v0, v_end = peak / div, peak / div / final_div

    def ref(t):  # phases end at int(0.25 * 100) = 25 and int(0.7 * 100) = 70
        if t < 25:
            return lerp(v0, peak, t / 25)
        if t < 70:
            return lerp(peak, v0, (t - 25) / 45)
        return lerp(v0, v_end, min(t - 70, 30) / 30)

    sched = S.linear_onecycle_schedule(
        T, peak, pct_start=0.25, pct_final=0.7, div_factor=div, final_div_factor=final_div
    )
    check(sched, ref, steps_around(12, 25, 50, 70, 85, T))


def test_cosine_onecycle_schedule():
    T, peak = 50, 1.0
    v0, v_end = peak / 25.0, peak / 25.0 / 1e4  # the defaults

    def ref(t):  # the rise ends at int(0.3 * 50) = 15
        return half_cosine(v0, peak, t / 15) if t < 15 else half_cosine(peak, v_end, min(t - 15, 35) / 35)

    check(S.cosine_onecycle_schedule(T, peak), ref, steps_around(7, 15, 30, T))


def test_join_schedules_shifts_each_later_schedule_to_its_boundary():
    identity = lambda step: jnp.asarray(step, float)
    sched = S.join_schedules([lambda step: jnp.asarray(-1.0), identity, identity], [10, 25])
    ref = lambda t: -1.0 if t < 10 else (t - 10 if t < 25 else t - 25)
    check(sched, ref, steps_around(10, 25))

    sched = S.join_schedules(
        [S.constant_schedule(1.0), S.linear_schedule(1.0, 0.0, 4), S.constant_schedule(7.0)], [3, 3]
    )
    check(sched, lambda t: 1.0 if t < 3 else 7.0, steps_around(3))  # a zero-length middle piece is skipped


def test_sgdr_schedule():
    cycles = [
        dict(init_value=0.0, peak_value=1.0, warmup_steps=2, decay_steps=10),
        dict(init_value=0.5, peak_value=0.5, warmup_steps=0, decay_steps=20, end_value=0.1),
        dict(init_value=0.0, peak_value=0.25, warmup_steps=4, decay_steps=8, exponent=2.0),
    ]

    def ref(t):
        start = 0
        for i, c in enumerate(cycles):
            W, D = c["warmup_steps"], c["decay_steps"]
            if t < start + D or i == len(cycles) - 1:
                u = t - start
                if u < W:
                    return lerp(c["init_value"], c["peak_value"], u / W)
                s = min(u - W, D - W) / (D - W)
                end = c.get("end_value", 0.0)
                return end + (c["peak_value"] - end) * (0.5 * (1 + math.cos(math.pi * s))) ** c.get("exponent", 1.0)
            start += D

    check(S.sgdr_schedule(cycles), ref, steps_around(2, 6, 10, 20, 30, 34, 38))


# ---------------------------------------------------------------- torch-named schedules


def test_step_decay_schedule():
    ref = lambda t: 0.8 * 0.5 ** math.floor(t / 7)
    check(S.step_decay_schedule(0.8, step_size=7, gamma=0.5), ref, [s for s in steps_around(7, 14, 21, 70) if s != FAR])
    check(S.step_decay_schedule(0.8, step_size=7), lambda t: 0.8 * 0.1 ** math.floor(t / 7), steps_around(7, 14))


def test_multistep_decay_schedule():
    milestones = [5, 12, 12, 30]  # a repeated milestone counts twice, as in torch
    ref = lambda t: 1.0 * 0.5 ** sum(m <= t for m in milestones)
    check(S.multistep_decay_schedule(1.0, milestones, gamma=0.5), ref, steps_around(*milestones))
    check(S.multistep_decay_schedule(1.0, []), lambda t: 1.0, steps_around(1))


@pytest.mark.parametrize("mode,gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.99)])
@pytest.mark.parametrize("up,down", [(4, None), (3, 7)])
def test_cyclic_schedule(mode, gamma, up, down):
    base, top = 0.1, 1.0
    total = up + (up if down is None else down)
    ratio = up / total

    def ref(t):  # torch.optim.lr_scheduler.CyclicLR's closed form
        cycle = math.floor(1 + t / total)
        x = 1 + t / total - cycle
        height = (top - base) * (x / ratio if x <= ratio else (x - 1) / (ratio - 1))
        scale = {"triangular": 1.0, "triangular2": 1 / 2 ** (cycle - 1), "exp_range": gamma**t}[mode]
        return base + height * scale

    sched = S.cyclic_schedule(base, top, up, step_size_down=down, mode=mode, gamma=gamma)
    check(sched, ref, steps_around(*[k * total + d for k in range(4) for d in (0, up)]))


def restarts_reference(init, period, mult, floor_value):
    def ref(t):  # walk the periods one by one
        length, t_cur = period, t
        while t_cur >= length:
            t_cur, length = t_cur - length, length * mult
        return floor_value + (init - floor_value) * (1 + math.cos(math.pi * t_cur / length)) / 2

    return ref


@pytest.mark.parametrize("period,mult", [(10, 1), (3, 2), (2, 3)])
def test_cosine_annealing_warm_restarts_schedule(period, mult):
    starts = [period * (mult**k - 1) // (mult - 1) if mult > 1 else period * k for k in range(8)]
    sched = S.cosine_annealing_warm_restarts_schedule(1.0, period, period_mult=mult, min_value=0.05)
    steps = steps_around(*starts) if mult > 1 else steps_around(*starts[:4], 995, 1000)
    check(sched, restarts_reference(1.0, period, mult, 0.05), [s for s in steps if s != FAR])


def test_warm_restarts_period_index_is_exact_at_every_restart_under_jit():
    # The period index comes from a logarithm; each restart must still begin at the top.
    for period, mult in [(1, 2), (3, 2), (5, 3), (2, 4)]:
        jitted = jax.jit(S.cosine_annealing_warm_restarts_schedule(1.0, period, period_mult=mult))
        starts = [period * (mult**k - 1) // (mult - 1) for k in range(1, 30)]
        starts = [s for s in starts if s < 2**24]  # float32 counts exactly up to here
        at = np.array([float(jitted(jnp.int32(s))) for s in starts])
        before = np.array([float(jitted(jnp.int32(s - 1))) for s in starts])
        np.testing.assert_array_equal(at, 1.0, err_msg=f"period={period}, mult={mult}")
        expected = [restarts_reference(1.0, period, mult, 0.0)(s - 1) for s in starts]
        np.testing.assert_allclose(before, expected, atol=1e-6)


@pytest.mark.parametrize("d_model,warmup", [(512, 4000), (64, 10)])
def test_inverse_sqrt_schedule_is_attention_is_all_you_need(d_model, warmup):
    def ref(t):  # Vaswani et al. (2017), eq. (3)
        return 0.0 if t == 0 else d_model**-0.5 * min(t**-0.5, t * warmup**-1.5)

    sched = S.inverse_sqrt_schedule(peak_value=(d_model * warmup) ** -0.5, warmup_steps=warmup)
    check(sched, ref, steps_around(warmup // 2, warmup, 4 * warmup))


@pytest.mark.parametrize("decay_type", ["linear", "cosine", "sqrt"])
@pytest.mark.parametrize("W,stable", [(5, 10), (0, 0)])
def test_warmup_stable_decay_schedule(decay_type, W, stable):
    init, peak, end, D = 0.1, 1.0, 0.01, 8
    remaining = {
        "linear": lambda s: 1 - s,
        "cosine": lambda s: (1 + math.cos(math.pi * s)) / 2,
        "sqrt": lambda s: 1 - math.sqrt(s),
    }[decay_type]

    def ref(t):
        if t < W:
            return lerp(init, peak, t / W)
        if t < W + stable:
            return peak
        return end + (peak - end) * remaining(min(t - W - stable, D) / D)

    sched = S.warmup_stable_decay_schedule(peak, W, stable, D, init_value=init, end_value=end, decay_type=decay_type)
    check(sched, ref, steps_around(W, W + stable, W + stable + D // 2, W + stable + D))


# ---------------------------------------------------------------- all schedules


def test_hyperparameters_given_as_arrays_are_traced_not_checked():
    @jax.jit
    def value(peak, step):
        return S.warmup_cosine_decay_schedule(0.0, peak, 10, 110, end_value=0.1 * peak)(step)

    assert float(value(jnp.asarray(2.0), 60)) == pytest.approx(1.1)
    assert float(value(jnp.asarray(4.0), 60)) == pytest.approx(2.2)
    S.exponential_decay(1.0, jnp.asarray(0), jnp.asarray(-1.0))  # arrays are not validated


def test_an_array_of_steps_is_evaluated_elementwise():
    sched = S.cyclic_schedule(0.0, 1.0, step_size_up=3, step_size_down=5, mode="exp_range", gamma=0.9)
    steps = np.arange(0, 40)
    np.testing.assert_allclose(sched(jnp.asarray(steps)), [float(sched(int(t))) for t in steps], rtol=1e-6)


def test_a_python_int_beyond_int32_is_fine():
    assert float(S.linear_schedule(1.0, 0.25, 10)(10**12)) == 0.25
    assert float(S.cosine_decay_schedule(1.0, 100, alpha=0.5)(2**40)) == 0.5
    assert (
        float(S.sgdr_schedule([dict(init_value=1.0, peak_value=1.0, warmup_steps=0, decay_steps=9)] * 2)(2**40)) == 0.0
    )


INVALID = [
    (S.polynomial_schedule, dict(init_value=1.0, end_value=0.0, power=2, transition_steps=0), "transition_steps"),
    (
        S.polynomial_schedule,
        dict(init_value=1.0, end_value=0.0, power=2, transition_steps=10, transition_begin=-1),
        "transition_begin",
    ),
    (S.linear_schedule, dict(init_value=1.0, end_value=0.0, transition_steps=-5), "transition_steps"),
    (S.exponential_decay, dict(init_value=1.0, transition_steps=0, decay_rate=0.5), "transition_steps"),
    (S.exponential_decay, dict(init_value=1.0, transition_steps=10, decay_rate=-0.5), "decay_rate"),
    (S.exponential_decay, dict(init_value=1.0, transition_steps=10, decay_rate=0.0), "decay_rate"),
    (
        S.exponential_decay,
        dict(init_value=1.0, transition_steps=10, decay_rate=0.5, transition_begin=-2),
        "transition_begin",
    ),
    (S.cosine_decay_schedule, dict(init_value=1.0, decay_steps=0), "decay_steps"),
    (S.warmup_constant_schedule, dict(init_value=0.0, peak_value=1.0, warmup_steps=-1), "warmup_steps"),
    (
        S.warmup_cosine_decay_schedule,
        dict(init_value=0.0, peak_value=1.0, warmup_steps=-1, decay_steps=10),
        "warmup_steps",
    ),
    (
        S.warmup_cosine_decay_schedule,
        dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=10),
        "decay_steps",
    ),
    (
        S.warmup_cosine_decay_schedule,
        dict(init_value=0.0, peak_value=1.0, warmup_steps=0, decay_steps=0),
        "decay_steps",
    ),
    (
        S.warmup_exponential_decay_schedule,
        dict(init_value=0.0, peak_value=1.0, warmup_steps=5, transition_steps=0, decay_rate=0.5),
        "transition_steps",
    ),
    (
        S.warmup_exponential_decay_schedule,
        dict(init_value=0.0, peak_value=1.0, warmup_steps=5, transition_steps=10, decay_rate=-1.0),
        "decay_rate",
    ),
    (
        S.warmup_exponential_decay_schedule,
        dict(init_value=0.0, peak_value=1.0, warmup_steps=-5, transition_steps=10, decay_rate=0.5),
        "warmup_steps",
    ),
    (S.piecewise_constant_schedule, dict(init_value=1.0, boundaries_and_scales={-1: 0.5}), "boundaries_and_scales"),
    (S.piecewise_constant_schedule, dict(init_value=1.0, boundaries_and_scales={5: -0.1}), "boundaries_and_scales"),
    (S.piecewise_interpolate_schedule, dict(interpolate_type="quadratic", init_value=1.0), "interpolate_type"),
    (
        S.piecewise_interpolate_schedule,
        dict(interpolate_type="linear", init_value=1.0, boundaries_and_scales={-3: 0.5}),
        "boundaries_and_scales",
    ),
    (
        S.piecewise_interpolate_schedule,
        dict(interpolate_type="cosine", init_value=1.0, boundaries_and_scales={3: -0.5}),
        "boundaries_and_scales",
    ),
    (S.linear_onecycle_schedule, dict(transition_steps=0, peak_value=1.0), "transition_steps"),
    (S.linear_onecycle_schedule, dict(transition_steps=100, peak_value=1.0, pct_start=0.0), "pct_start"),
    (S.linear_onecycle_schedule, dict(transition_steps=100, peak_value=1.0, pct_start=1.0), "pct_start"),
    (S.linear_onecycle_schedule, dict(transition_steps=100, peak_value=1.0, pct_start=0.5, pct_final=0.4), "pct_final"),
    (S.linear_onecycle_schedule, dict(transition_steps=100, peak_value=1.0, pct_final=1.2), "pct_final"),
    (S.linear_onecycle_schedule, dict(transition_steps=100, peak_value=1.0, div_factor=0.0), "div_factor"),
    (S.linear_onecycle_schedule, dict(transition_steps=100, peak_value=1.0, final_div_factor=-1.0), "final_div_factor"),
    (S.cosine_onecycle_schedule, dict(transition_steps=-5, peak_value=1.0), "transition_steps"),
    (S.cosine_onecycle_schedule, dict(transition_steps=100, peak_value=1.0, pct_start=1.5), "pct_start"),
    (S.cosine_onecycle_schedule, dict(transition_steps=100, peak_value=1.0, div_factor=-2.0), "div_factor"),
    (S.join_schedules, dict(schedules=[S.constant_schedule(1.0)] * 3, boundaries=[10, 5]), "boundaries"),
    (S.join_schedules, dict(schedules=[S.constant_schedule(1.0)] * 2, boundaries=[-1]), "boundaries"),
    (S.join_schedules, dict(schedules=[S.constant_schedule(1.0)] * 2, boundaries=[1, 2]), "boundaries"),
    (S.join_schedules, dict(schedules=[], boundaries=[]), "schedules"),
    (S.sgdr_schedule, dict(cosine_kwargs=[]), "cosine_kwargs"),
    (
        S.sgdr_schedule,
        dict(cosine_kwargs=[dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=3)]),
        "decay_steps",
    ),
    (S.step_decay_schedule, dict(init_value=1.0, step_size=0), "step_size"),
    (S.step_decay_schedule, dict(init_value=1.0, step_size=10, gamma=-0.1), "gamma"),
    (S.multistep_decay_schedule, dict(init_value=1.0, milestones=[30, 10]), "milestones"),
    (S.multistep_decay_schedule, dict(init_value=1.0, milestones=[-1, 10]), "milestones"),
    (S.multistep_decay_schedule, dict(init_value=1.0, milestones=[10], gamma=-1.0), "gamma"),
    (S.cyclic_schedule, dict(base_value=0.1, max_value=1.0, step_size_up=0), "step_size_up"),
    (S.cyclic_schedule, dict(base_value=0.1, max_value=1.0, step_size_up=4, step_size_down=-1), "step_size_down"),
    (S.cyclic_schedule, dict(base_value=0.1, max_value=1.0, step_size_up=4, mode="sine"), "mode"),
    (S.cyclic_schedule, dict(base_value=0.1, max_value=1.0, step_size_up=4, mode="exp_range", gamma=-0.5), "gamma"),
    (S.cosine_annealing_warm_restarts_schedule, dict(init_value=1.0, period=0), "period"),
    (S.cosine_annealing_warm_restarts_schedule, dict(init_value=1.0, period=10, period_mult=0), "period_mult"),
    (S.cosine_annealing_warm_restarts_schedule, dict(init_value=1.0, period=10, period_mult=1.5), "period_mult"),
    (S.inverse_sqrt_schedule, dict(peak_value=1.0, warmup_steps=0), "warmup_steps"),
    (
        S.warmup_stable_decay_schedule,
        dict(peak_value=1.0, warmup_steps=-1, stable_steps=5, decay_steps=5),
        "warmup_steps",
    ),
    (
        S.warmup_stable_decay_schedule,
        dict(peak_value=1.0, warmup_steps=5, stable_steps=-1, decay_steps=5),
        "stable_steps",
    ),
    (
        S.warmup_stable_decay_schedule,
        dict(peak_value=1.0, warmup_steps=5, stable_steps=5, decay_steps=0),
        "decay_steps",
    ),
    (
        S.warmup_stable_decay_schedule,
        dict(peak_value=1.0, warmup_steps=5, stable_steps=5, decay_steps=5, decay_type="exp"),
        "decay_type",
    ),
]


@pytest.mark.parametrize(
    "factory,kwargs,name", INVALID, ids=[f"{f.__name__}-{name}-{i}" for i, (f, _, name) in enumerate(INVALID)]
)
def test_invalid_arguments_raise_naming_the_argument_and_value(factory, kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b") as info:
        factory(**kwargs)
    bad = kwargs.get(name)
    if bad is not None and not isinstance(bad, (list, dict)):
        assert repr(bad) in str(info.value)
