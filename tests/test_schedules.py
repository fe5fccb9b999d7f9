"""progprune_cli.pruning.schedules: exact events of every registered schedule, horizons, and one-line errors."""

from __future__ import annotations

import math
from typing import Any

import pytest

from progprune_cli.pruning.schedules import SCHEDULES, Event, Horizon, build_events
from conftest import component
from progprune_cli.errors import UserError

COMMON = "end, frequency, initial_sparsity, max_drop, name, rewind, start, unit"


def events(name: str, units: int = 5, initial: float = 0.0, final: float = 0.8, what: str = "sparsity",
           options: dict[str, Any] | None = None, **cfg: Any) -> tuple[list[int], list[float]]:
    """(times, targets) of `build_events`, split so targets can be compared with pytest.approx."""
    result = build_events(component("schedule", name, **cfg, **(options or {})), units, initial, final, what)
    assert all(isinstance(e, Event) for e in result)
    return [e.t for e in result], [e.target for e in result]


def fails(name: str, units: int = 5, initial: float = 0.0, final: float = 0.8, what: str = "sparsity",
          options: dict[str, Any] | None = None, **cfg: Any) -> str:
    with pytest.raises(UserError) as error:
        build_events(component("schedule", name, **cfg, **(options or {})), units, initial, final, what)
    return str(error.value)


def test_the_registry_holds_the_six_schedules() -> None:
    assert SCHEDULES.names() == ["constant", "cubic", "exponential", "iterative", "linear", "oneshot"]


# --- Horizon -----------------------------------------------------------------------------------------------------

def test_horizon_times_and_fraction() -> None:
    h = Horizon(start=1, end=7, frequency=2)
    assert h.times() == [1, 3, 5, 7]
    assert [h.fraction(t) for t in h.times()] == [0.0, 1 / 3, 2 / 3, 1.0]
    assert Horizon(2, 2, 1).times() == [2]
    assert Horizon(2, 2, 1).fraction(2) == 1.0


# --- each schedule at known points -------------------------------------------------------------------------------

def test_oneshot_is_one_event_at_start() -> None:
    assert events("oneshot") == ([0], [0.8])
    assert events("oneshot", start=2) == ([2], [0.8])
    assert events("oneshot", start=2, end=3, frequency=1) == ([2], [0.8])
    assert events("oneshot", initial=0.3) == ([0], [0.8])


def test_linear_rises_in_equal_steps() -> None:
    times, targets = events("linear", final=0.5)
    assert times == [0, 1, 2, 3, 4]
    assert targets == [0.0, 0.125, 0.25, 0.375, 0.5]


def test_linear_from_an_initial_sparsity_between_start_and_end() -> None:
    times, targets = events("linear", initial=0.2, start=1, end=3)
    assert times == [1, 2, 3]
    assert targets == pytest.approx([0.2, 0.5, 0.8], abs=1e-12)


def test_cubic_is_zhu_and_gupta() -> None:
    times, targets = events("cubic")
    assert times == [0, 1, 2, 3, 4]
    assert targets == pytest.approx([0.0, 0.4625, 0.7, 0.7875, 0.8], abs=1e-12)
    assert targets[-1] == 0.8


def test_cubic_with_an_initial_sparsity_and_a_start() -> None:
    # s_t = 0.8 + (0.2 - 0.8)(1 - (t - 2)/2)^3 at t = 2, 3, 4.
    times, targets = events("cubic", initial=0.2, start=2)
    assert times == [2, 3, 4]
    assert targets == pytest.approx([0.2, 0.8 - 0.6 / 8, 0.8], abs=1e-12)


def test_cubic_with_frequency_steps_every_frequency_units() -> None:
    times, targets = events("cubic", units=9, frequency=2)
    assert times == [0, 2, 4, 6, 8]
    assert targets == pytest.approx([0.0, 0.4625, 0.7, 0.7875, 0.8], abs=1e-12)


@pytest.mark.parametrize("name", ["linear", "cubic", "exponential"])
def test_the_last_event_reaches_the_final_target_whatever_the_frequency(name: str) -> None:
    try:
        _, targets = events(name, frequency=3)  # times 0, 3 of 0..4
    except UserError:
        return  # refusing the horizon is a fix too
    assert targets[-1] == pytest.approx(0.8, abs=1e-12)


def test_cubic_over_a_single_unit_is_the_final_target() -> None:
    assert events("cubic", units=1) == ([0], [0.8])


def test_exponential_at_known_points() -> None:
    decay = 3.0
    scale = 1 - math.exp(-decay)
    times, targets = events("exponential")
    assert times == [0, 1, 2, 3, 4]
    assert targets == pytest.approx([0.8 * (1 - math.exp(-decay * u)) / scale for u in (0, 0.25, 0.5, 0.75, 1)],
                                    abs=1e-12)
    assert targets[0] == 0.0
    assert targets[-1] == pytest.approx(0.8, abs=1e-12)


def test_exponential_decay_option() -> None:
    _, targets = events("exponential", units=3, options={"decay": 1})
    mid = 0.8 * (1 - math.exp(-0.5)) / (1 - math.exp(-1))
    assert targets == pytest.approx([0.0, mid, 0.8], abs=1e-12)
    assert mid == pytest.approx(0.4979674649614837, abs=1e-12)


def test_constant_is_the_final_target_at_every_time() -> None:
    assert events("constant", initial=0.3) == ([0, 1, 2, 3, 4], [0.8] * 5)
    assert events("constant", start=1, end=3) == ([1, 2, 3], [0.8] * 3)
    assert events("constant", frequency=2) == ([0, 2, 4], [0.8] * 3)


def test_schedules_in_threshold_mode_ramp_the_threshold() -> None:
    times, targets = events("cubic", units=3, final=0.3, what="threshold")
    assert times == [0, 1, 2]
    assert targets == pytest.approx([0.0, 0.2625, 0.3], abs=1e-12)
    assert events("oneshot", final=0.2, what="threshold") == ([0], [0.2])


# --- iterative ---------------------------------------------------------------------------------------------------

def test_iterative_rounds_come_from_the_default_rate() -> None:
    # 0.2 of the remaining weights per round: 0.2, 0.36, 0.488, then capped at 0.5 (log(0.5)/log(0.8) = 3.1 -> 4).
    times, targets = events("iterative", final=0.5)
    assert times == [0, 1, 2, 3]
    assert targets == pytest.approx([0.2, 0.36, 0.488, 0.5], abs=1e-12)
    assert targets[-1] == 0.5


def test_iterative_exact_powers_need_no_extra_round() -> None:
    _, targets = events("iterative", final=0.36)
    assert targets == pytest.approx([0.2, 0.36], abs=1e-12)
    _, targets = events("iterative", final=0.75, options={"rate": 0.5})
    assert targets == [0.5, 0.75]


def test_iterative_rate_applies_to_what_initial_sparsity_left() -> None:
    _, targets = events("iterative", initial=0.5, final=0.875, options={"rate": 0.5})
    assert targets == [0.75, 0.875]


def test_iterative_with_fixed_rounds_derives_the_rate() -> None:
    times, targets = events("iterative", final=0.5, options={"rounds": 2})
    assert times == [0, 1]
    assert targets == pytest.approx([1 - math.sqrt(0.5), 0.5], abs=1e-12)
    assert events("iterative", final=0.5, options={"rounds": 1}) == ([0], [0.5])


def test_iterative_uses_the_first_times_of_the_horizon() -> None:
    times, targets = events("iterative", units=9, final=0.36, start=1, frequency=3)
    assert times == [1, 4]
    assert targets == pytest.approx([0.2, 0.36], abs=1e-12)


def test_iterative_with_nothing_to_prune_is_one_event() -> None:
    assert events("iterative", initial=0.5, final=0.5) == ([0], [0.5])


# --- horizon errors ----------------------------------------------------------------------------------------------

def test_start_beyond_the_stage() -> None:
    assert fails("cubic", start=5) == "schedule.start: got 5; the prune stage has epochs 0..4"
    assert fails("cubic", units=2, start=2, unit="step") == "schedule.start: got 2; the prune stage has steps 0..1"


def test_end_beyond_the_stage() -> None:
    assert fails("linear", end=5) == "schedule.end: got 5; the prune stage has epochs 0..4"


def test_end_before_start() -> None:
    assert fails("linear", start=3, end=2) == "schedule.end: got 2; must be >= schedule.start (3)"


def test_no_prune_units_is_one_shot_pruning_to_the_final_target_before_any_training() -> None:
    assert events("oneshot", units=0) == ([0], [0.8])
    assert events("cubic", units=0, initial=0.1) == ([0], [0.8])  # one step: straight to the final target
    assert fails("oneshot", units=0, start=1) == ("schedule.start: got 1; prune.epochs=0 prunes once, at 0, before "
                                                  "any training")
    assert fails("linear", units=0, end=2) == ("schedule.end: got 2; prune.epochs=0 prunes once, at 0, before any "
                                               "training")
    assert fails("iterative", units=0, options={"rate": 0.5}).startswith("schedule.rate: 0.5 per round: ")


def test_one_shot_without_retraining_has_no_dense_long_row_and_says_so() -> None:
    from conftest import composed
    from progprune_cli.config.load import load_run_config
    from progprune_cli.report.tables import answers
    from progprune_cli.results.schema import SCHEMA_VERSION, Results
    from progprune_cli.stages.dense_long import DenseLong

    oneshot = composed("+strategy=weight", "schedule=oneshot", "prune.epochs=0", "finetune.epochs=0")
    assert not DenseLong.applies(load_run_config(oneshot))
    assert DenseLong.applies(load_run_config(composed("+strategy=weight", "prune.epochs=0")))
    results = Results.from_json({"schema_version": SCHEMA_VERSION, "models": {}, "pruning": {"strategy": "weight"},
                                 "config": oneshot})
    assert answers(results)[0].endswith("; no retraining (finetune.epochs=0, prune.epochs=0: one-shot)")


# --- option errors -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["oneshot", "linear", "cubic", "constant"])
def test_schedules_without_options_reject_any_key(name: str) -> None:
    assert fails(name, options={"decay": 1}) == f"schedule.decay: unknown key; allowed keys are {COMMON}"


def test_unknown_key_on_schedules_with_options_lists_theirs() -> None:
    assert fails("iterative", final=0.5, options={"decay": 1}) == (
        "schedule.decay: unknown key; allowed keys are end, frequency, initial_sparsity, max_drop, name, rate, "
        "rewind, rounds, start, unit")
    assert fails("exponential", options={"rate": 0.2}) == (
        "schedule.rate: unknown key; allowed keys are decay, end, frequency, initial_sparsity, max_drop, name, "
        "rewind, start, unit")


def test_exponential_decay_must_be_positive() -> None:
    assert fails("exponential", options={"decay": 0}) == "schedule.decay: got 0.0; must be > 0"
    assert fails("exponential", options={"decay": "fast"}) == "schedule.decay: got 'fast'; expected a number"


def test_iterative_rounds_zero() -> None:
    assert fails("iterative", final=0.5, options={"rounds": 0}) == "schedule.rounds: got 0; must be >= 1 (or null)"


@pytest.mark.parametrize(("rate", "shown"), [(0, "0.0"), (1, "1.0"), (1.5, "1.5"), (-0.2, "-0.2")])
def test_iterative_rate_outside_zero_one(rate: float, shown: str) -> None:
    assert fails("iterative", final=0.5, options={"rate": rate}) == f"schedule.rate: got {shown}; must be in (0, 1)"


def test_iterative_in_threshold_mode() -> None:
    assert fails("iterative", final=0.2, what="threshold") == (
        "schedule=iterative: prunes a fraction of the remaining weights, so it needs strategy.sparsity; "
        "unset strategy.threshold (strategy.threshold=null)")


def test_iterative_with_more_rounds_than_the_stage_offers() -> None:
    tail = "; raise prune.epochs, lower schedule.frequency or use schedule.unit=step"
    assert fails("iterative", units=3, final=0.5) == (
        "schedule.rate: 0.2 per round: 4 rounds need 4 pruning steps but the prune stage offers 3" + tail)
    assert events("iterative", units=5, final=0.5, options={"rounds": 3}, frequency=2)[0] == [0, 2, 4]
    assert fails("iterative", units=5, final=0.5, options={"rounds": 4}, frequency=2) == (
        "schedule.rounds: 4 rounds need 4 pruning steps but the prune stage offers 3" + tail)


def test_unknown_schedule_lists_the_known_ones() -> None:
    assert fails("step") == ("schedule=step: unknown schedule; choose one of constant, cubic, exponential, "
                             "iterative, linear, oneshot")
