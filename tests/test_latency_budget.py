"""strategy.target.latency_ms (issue 19): the sparsity whose compacted model meets a measured per-sample latency,
found by timing candidates with the Speed table's method under a fake clock that advances by each conv's width, so
a candidate's latency is a known function of its channels: every probe recorded, an infeasible budget one line, the
search stored in the run folder and reused on resume without timing again, bad values and weight strategies refused."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch import nn

from conftest import TINY, component, composed, model_of, refused
from progprune_cli.config.load import load_run_config
from progprune_cli.errors import UserError
from progprune_cli.measure import latency
from progprune_cli.parts import build_parts, candidate_timer, timing_setup
from progprune_cli.pruning.budget import BudgetFit, Probe
from progprune_cli.pruning.latency_budget import search_latency
from progprune_cli.pruning.strategies import build_strategy
from progprune_cli.stored_budget import FILE, keep_search, stored_search, to_record
from test_budgets import INFO

CPU = torch.device("cpu")
UNIT = 1e-4  # seconds the fake clock advances per output channel of each Conv2d call
RUN = [*TINY, "model=two_conv_cnn", "+strategy=structured"]
SETUP = "at evaluate.latency_batch=1 on cpu, 1 thread(s), as the Speed table"


def ms(kept: int) -> float:
    """two_conv_cnn's milliseconds per sample on the fake clock: conv1 at its full 32 (keep_first), conv2 `kept`."""
    return (32 + kept) * UNIT * 1000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The fake clock: each Conv2d call advances it by UNIT per output channel; yields how often it was read."""
    now, reads = [0.0], [0]

    def read(device: torch.device) -> float:
        reads[0] += 1
        return now[0]

    def advance(module: nn.Module, args: object, output: object) -> None:
        if isinstance(module, nn.Conv2d):
            now[0] += module.out_channels * UNIT

    monkeypatch.setattr(latency, "_clock", read)
    handle = nn.modules.module.register_module_forward_hook(advance)
    yield reads
    handle.remove()


def config(*overrides: str) -> object:
    import progprune_cli.catalog  # noqa: F401  (the schemas, for the typed pass)

    return load_run_config(composed(*RUN, *overrides))


def search(target: float) -> BudgetFit:
    """The search on two_conv_cnn (1×8×8 inputs, keep_first: conv2 the only unit), timed as a TINY run would."""
    torch.manual_seed(0)
    model = model_of("two_conv_cnn", {}, INFO)
    strategy = build_strategy(component("strategy", "structured", target={"latency_ms": target}))
    strategy.check(model, INFO)
    ev = config().evaluate  # type: ignore[attr-defined]
    return search_latency(strategy, model, INFO, candidate_timer(ev, torch.zeros(256, 1, 8, 8), CPU),
                          timing_setup(ev, CPU))


# Bisection over conv2's 33 plateaus for ≤ 5.05 ms (18 channels kept: 5.0 ms; 19: 5.1 ms): the largest ratio first
# (1 kept: the zero-width guard), then none, then halves; each sparsity the shortest decimal of its plateau.
PROBES = [(0.99, 1), (0.0, 32), (0.5, 16), (0.24, 24), (0.36, 20), (0.43, 18), (0.4, 19)]


def test_the_search_bisects_to_the_least_sparsity_that_meets_it_and_records_every_probe(clock: list[int]) -> None:
    found = search(5.05)
    assert (found.key, found.target, found.sparsity, found.within, found.setup) == \
        ("latency_ms", 5.05, 0.43, True, SETUP)
    assert found.achieved == pytest.approx(ms(18))
    assert [(p.sparsity, p.repeats, p.meets) for p in found.probes] == \
        [(sparsity, 2, ms(kept) <= 5.05) for sparsity, kept in PROBES]  # TINY's evaluate.repeats=2
    for probe, (_, kept) in zip(found.probes, PROBES):
        assert (probe.median_ms, probe.p10_ms, probe.p90_ms) == pytest.approx((ms(kept),) * 3)
    assert found.line() == ("strategy.target.latency_ms=5.05: strategy.sparsity 0.43 runs 5 ms per sample (median of "
                            f"its probe; measured before training, {SETUP}; 7 probes, the sparsity resolved to "
                            "0.01); it replaces strategy.sparsity")
    assert found.probes[0].line(1, found.where) == ("strategy.target.latency_ms=5.05: probe 1: strategy.sparsity 0.99 "
                                                    "runs 3.3 ms per sample (p10–p90 3.3–3.3, 2 passes): meets it")


def test_a_budget_the_most_pruned_model_misses_is_one_line_naming_the_best_latency(clock: list[int]) -> None:
    with pytest.raises(UserError) as refusal:
        search(3.0)
    assert str(refusal.value) == ("strategy.target.latency_ms=3: the fastest this model runs is 3.3 ms per sample, at "
                                  f"strategy.sparsity 0.99 (the most it can prune), timed {SETUP}")


def test_the_stored_search_is_reused_on_resume_without_timing_again(clock: list[int], tmp_path: Path) -> None:
    target = "strategy.target.latency_ms=5.05"
    first = config(target)
    parts = build_parts(first)  # type: ignore[arg-type]
    lines: list[str] = []
    keep_search(tmp_path, parts.budget, False, lines.append)
    assert parts.budget is not None and parts.budget.sparsity == 0.43 and len(parts.budget.probes) == 7
    assert first.strategy.sparsity == 0.43 and parts.events[-1].target == 0.43  # type: ignore[attr-defined]
    assert lines == [p.line(i, parts.budget.where) for i, p in enumerate(parts.budget.probes, 1)]
    assert json.loads((tmp_path / FILE).read_text()) == to_record(parts.budget).to_json()
    timed = clock[0]
    again = config(target)
    stored = stored_search(tmp_path, again)  # type: ignore[arg-type]
    resumed = build_parts(again, None, stored)  # type: ignore[arg-type]
    assert clock[0] == timed  # not timed again
    assert resumed.budget == parts.budget and [e.target for e in resumed.events] == [e.target for e in parts.events]
    keep_search(tmp_path, resumed.budget, True, lines.append)
    assert lines[-1] == f"{target}: the search stored in {FILE} is reused (7 probes), not timed again"
    with pytest.raises(UserError) as refusal:
        stored_search(tmp_path, config("strategy.target.latency_ms=4"))  # type: ignore[arg-type]
    assert str(refusal.value) == (f"{tmp_path / FILE}: holds a search for {target}, but the run asks for "
                                  "strategy.target.latency_ms=4; remove the file to time the candidates again")


WEIGHT = ("strategy.target.latency_ms=2: strategy={} zeroes single weights, which leaves the dense model's shapes and "
          "so its latency as they are; use a strategy that removes channels (structured, activation, or taylor/random "
          "with strategy.granularity=channel)")
BAD = ("strategy.target.latency_ms: got {}; must be > 0 (milliseconds per sample at evaluate.latency_batch, "
       "measured on the run's device)")
NOT_FINITE = "strategy.target.latency_ms: got {}; expected a finite number"


@pytest.mark.parametrize(("overrides", "message"), [
    (["+strategy=weight", "strategy.target.latency_ms=2"], WEIGHT.format("weight")),
    (["+strategy=taylor", "strategy.target.latency_ms=2"], WEIGHT.format("taylor")),
    (["+strategy=structured", "strategy.target.latency_ms=0"], BAD.format(0)),
    (["+strategy=structured", "strategy.target.latency_ms=-1.5"], BAD.format(-1.5)),
    (["+strategy=structured", "strategy.target.latency_ms=nan"], NOT_FINITE.format("nan")),
    (["+strategy=structured", "strategy.target.latency_ms=inf"], NOT_FINITE.format("inf")),
    (["+strategy=structured", "strategy.target.macs=2", "strategy.target.latency_ms=3"],
     "strategy.target: got macs=2 and latency_ms=3; set one of them"),
])
def test_bad_latency_budgets_are_refused_in_one_line_before_any_folder(
        overrides: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    err = refused("train", *TINY, "model=two_conv_cnn", *overrides, cwd=tmp_path, monkeypatch=monkeypatch,
                  capsys=capsys)
    assert err == f"progprune: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


FIT = BudgetFit("latency_ms", 0.25, 0.43, 0.24, True, SETUP, (Probe(0.43, 0.24, 0.23, 0.25, 5, True),))


def budgeted_run(path: Path, target: float, compacted_ms: float) -> Path:
    """A finished run folder (tests/run_fixture) of a latency budget: its search and a compacted row."""
    from run_fixture import make_run, model_entry

    run = make_run(path, config={"strategy.name": "structured", "strategy.target.latency_ms": target})
    data = json.loads((run / "results.json").read_text())
    entry = model_entry("compacted", 0.95, 5429, 0.005, physical=5429, mask_only=False)
    entry["latency"]["batch1_ms"] = {"median": compacted_ms, "p10": compacted_ms, "p90": compacted_ms}
    data["models"]["compacted"] = entry
    data["pruning"]["budget"] = to_record(replace(FIT, target=target)).to_json()
    (run / "results.json").write_text(json.dumps(data))
    return run


def test_target_and_achieved_latency_in_the_speed_table_and_compare(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from progprune_cli.report.compare_cli import main
    from progprune_cli.report.tables import speed_table
    from progprune_cli.results.schema import Results

    runs = [budgeted_run(tmp_path / "a", 0.25, 0.26), budgeted_run(tmp_path / "b", 0.3, 0.28)]
    results = Results.from_json(json.loads((runs[0] / "results.json").read_text()))
    assert results.pruning is not None and results.pruning.budget == to_record(FIT)  # read back as written
    assert ("strategy.target.latency_ms=0.25: target at most 0.25 ms per sample; the search measured 0.24 ms at "
            "strategy.sparsity 0.43 before training, compacted 0.26 ms here (batch-1 latency; other load on the "
            "machine between the two timings moves it)") in speed_table(results).footnotes
    assert main([str(run) for run in runs] + ["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(row["strategy.target.latency_ms"], row["latency_ms"]) for row in rows] == [(0.25, 0.26), (0.3, 0.28)]


@pytest.mark.parametrize(("plant", "why"), [
    (lambda path: path.symlink_to(path.with_name("elsewhere.json")), "a symbolic link (never followed)"),
    (lambda path: path.write_text(json.dumps({**to_record(FIT).to_json(), "probes": "fast"})),
     "budget.json.probes: expected a list, found a string 'fast'"),
    (lambda path: path.write_text(json.dumps({**to_record(FIT).to_json(), "sparsity": None})), "a field is missing"),
])
def test_a_damaged_or_planted_stored_search_is_one_line(plant: object, why: str, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.json").write_text(json.dumps(to_record(FIT).to_json()))
    plant(tmp_path / FILE)  # type: ignore[operator]
    with pytest.raises(UserError) as refusal:
        stored_search(tmp_path, config("strategy.target.latency_ms=0.25"))  # type: ignore[arg-type]
    assert str(refusal.value) == (f"{tmp_path / FILE}: the stored latency search cannot be used ({why}); remove the "
                                  "file to time the candidates again")
