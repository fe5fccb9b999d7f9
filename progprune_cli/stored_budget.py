"""A budget as results.json records it, and a latency search kept in the run folder (budget.json) so that
`progprune resume` reuses it: timed again, noise could pick another sparsity, and the run would not be the one begun."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from progprune_cli.atomic import write_atomic
from progprune_cli.config import RunConfig
from progprune_cli.errors import UserError
from progprune_cli.pruning.budget import BudgetFit, Probe
from progprune_cli.reading import Unreadable, read_json
from progprune_cli.results.record import SchemaError
from progprune_cli.results.schema import Budget, BudgetProbe

FILE = "budget.json"


def to_record(fit: BudgetFit) -> Budget:
    """`pruning.budget` of results.json (and budget.json's content)."""
    probes = tuple(BudgetProbe(sparsity=p.sparsity, median_ms=p.median_ms, p10_ms=p.p10_ms, p90_ms=p.p90_ms,
                               repeats=p.repeats, meets=p.meets) for p in fit.probes)
    return Budget(key=fit.key, target=fit.target, sparsity=fit.sparsity, achieved=fit.achieved, within=fit.within,
                  setup=fit.setup, probes=probes)


def stored_search(run_dir: Path, cfg: RunConfig) -> BudgetFit | None:
    """budget.json's latency search, when the run's budget is latency_ms and a first attempt stored one (None
    otherwise); a file that cannot be read, or that was searched for another target, is one line."""
    target = None if cfg.strategy is None else cfg.strategy.target
    path = run_dir / FILE
    if target is None or target.key != "latency_ms" or not os.path.lexists(path):
        return None
    try:
        fit = _fit(Budget.from_json(read_json(path), strict=True, path=FILE))
    except (Unreadable, SchemaError, TypeError, ValueError) as error:
        why = error.why if isinstance(error, Unreadable) else str(error)
        raise UserError(f"{path}: the stored latency search cannot be used ({why}); remove the file to time the "
                        "candidates again") from None
    if fit.key != "latency_ms" or fit.target != target.latency_ms:
        raise UserError(f"{path}: holds a search for strategy.target.{fit.key}={fit.target:g}, but the run asks for "
                        f"strategy.target.latency_ms={target.latency_ms:g}; remove the file to time the candidates "
                        "again")
    return fit


def keep_search(run_dir: Path, fit: BudgetFit | None, reused: bool, log: Callable[[str], None]) -> None:
    """A latency search's lines in run.log (one per probe), and the search stored in budget.json on the attempt
    that timed it; a resumed attempt says it reused it."""
    if fit is None or fit.key != "latency_ms":
        return
    if reused:
        log(f"{fit.where}: the search stored in {FILE} is reused ({len(fit.probes)} probes), not timed again")
        return
    for index, probe in enumerate(fit.probes, 1):
        log(probe.line(index, fit.where))
    write_atomic(run_dir / FILE, json.dumps(to_record(fit).to_json(), indent=1) + "\n")


def _fit(record: Budget) -> BudgetFit:
    """The search as the run uses it; a field the file lacks is a TypeError (the caller's one line)."""
    values = (record.key, record.target, record.sparsity, record.achieved, record.within, record.setup)
    if any(value is None for value in values) or not record.probes:
        raise TypeError("a field is missing")
    probes = tuple(Probe(float(p.sparsity), float(p.median_ms), float(p.p10_ms), float(p.p90_ms), int(p.repeats),
                         bool(p.meets)) for p in record.probes)  # type: ignore[arg-type]
    return BudgetFit(str(record.key), float(record.target), float(record.sparsity),  # type: ignore[arg-type]
                     float(record.achieved), bool(record.within), record.setup, probes)  # type: ignore[arg-type]
