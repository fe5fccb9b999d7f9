"""`compare --pivot ROWS,COLUMNS`: a metric as mean ± std over seeds per (method, budget), the table a paper prints."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from progprune_cli.errors import UserError
from progprune_cli.report.compare import (HEADLINE, ORT_COLUMN, comparable_text, build_row, check_where, headline,
                                          matches)
from progprune_cli.report.render import Table, format_cell
from progprune_cli.report.runs import RunRecord
from progprune_cli.report.tables import NA, pct, times

# Every figure headline() gives a run; the default is the final (finetuned) model's test accuracy.
METRICS = (*HEADLINE, "test_acc_vs_long", "macs_effective", ORT_COLUMN)
DEFAULT_METRIC = "test_acc"
# `strategy.target.*` budgets, first set one wins; a run without one is placed by its sparsity.
TARGET_KEYS = ("strategy.target.macs", "strategy.target.params", "strategy.target.latency_ms")
FALLBACK_TARGET = "strategy.sparsity"
SHORT = {"strategy": ("strategy.name",), "target": (*TARGET_KEYS, FALLBACK_TARGET)}
SEED = "seed"  # runs that differ only here are one cell
_FORM = "expected ROWS,COLUMNS: two keys, e.g. strategy,target"


@dataclass(frozen=True)
class Pivot:
    """The parsed --pivot: each axis a list of candidate config keys (the first one a run sets places it)."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]


def parse_pivot(spec: str, records: Sequence[RunRecord]) -> Pivot:
    """`A,B` with A and B short names (strategy, target) or config keys some run has; one line naming what fits."""
    parts = [part.strip() for part in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UserError(f"--pivot {spec!r}: {_FORM}")
    known = {key for record in records for key in record.config}
    for part in parts:
        if part not in SHORT and part not in known:
            raise UserError(f"--pivot {spec!r}: unknown key {part!r}; use {', '.join(SHORT)} or a dotted config key "
                            f"of the runs (e.g. strategy.sparsity, seed)")
    rows, columns = (SHORT.get(part, (part,)) for part in parts)
    if rows == columns:
        raise UserError(f"--pivot {spec!r}: rows and columns are the same key; {_FORM}")
    return Pivot(rows, columns)


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise UserError(f"--metric {metric!r}: unknown metric; allowed: {', '.join(METRICS)}")
    return metric


def place(config: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, Any]:
    """(key, value) of the first candidate key the run sets; the last candidate (even unset) otherwise."""
    key = next((k for k in keys if config.get(k) is not None), keys[-1])
    return key, config.get(key)


def label(key: str, value: Any) -> str:
    """`leaf=value` with numbers as short as they are exact (`macs=2`, `sparsity=0.5`)."""
    text = f"{value:g}" if isinstance(value, float) else format_cell(key, value)
    return f"{key.rsplit('.', 1)[-1]}={text}"


def _order(values: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    # Budgets ascending when every one is a number; names (methods) in the sweep's own order.
    unique = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for _, v in unique):
        return sorted(unique)
    return unique


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


@dataclass
class Cell:
    """The runs of one (row, column): those with the metric are averaged, the rest only counted."""

    labels: list[str]
    figures: list[dict[str, Any]]
    skipped: int = 0

    def values(self, key: str) -> list[float]:
        return [f[key] for f in self.figures if f.get(key) is not None]

    def stats(self, metric: str) -> dict[str, Any]:
        found = self.values(metric)
        std = statistics.stdev(found) if len(found) > 1 else None
        # params left = 1 − the final model's sparsity (compare's `sparsity`), averaged over the same runs.
        left = _mean([1 - s for s in self.values("sparsity")])
        return {"n": len(found), f"{metric}_mean": _mean(found), f"{metric}_std": std, "params_left_mean": left,
                "measured_speedup_mean": _mean(self.values("measured_speedup")), "not_averaged": self.skipped,
                "runs": " ".join(self.labels)}


def cell_text(metric: str, stats: dict[str, Any]) -> str:
    """`mean ± std (n=3); 50.0% params; 2.00×`, or — where no run of the cell has the metric."""
    mean, std = stats[f"{metric}_mean"], stats[f"{metric}_std"]
    if mean is None:
        return NA
    spread = NA if std is None else format_cell(metric, std, signed=False)
    return (f"{format_cell(metric, mean)} ± {spread} (n={stats['n']}); {pct(stats['params_left_mean'])} params; "
            f"{times(stats['measured_speedup_mean'])}")


def _check_seeds_only(members: list[tuple[str, RunRecord]]) -> None:
    """Averaging runs that differ in more than the seed would hide a difference: refuse, naming it."""
    (name, first), rest = members[0], members[1:]
    for other_name, other in rest:
        keys = dict.fromkeys([*first.config, *other.config])
        differ = [k for k in keys
                  if k != SEED and comparable_text(first.config.get(k)) != comparable_text(other.config.get(k))]
        if differ:
            key = differ[0]
            raise UserError(f"--pivot: runs {name} and {other_name} share a cell but differ in {key} "
                            f"({first.config.get(key)!r} vs {other.config.get(key)!r}), not only in seed; keep one "
                            "with --where or pivot on that key")


def _cells(records: list[RunRecord], labels: list[str], pivot: Pivot, metric: str, where: Sequence[str]
           ) -> tuple[dict[tuple[Any, Any], Cell], list[str]]:
    """Group the runs by (row, column); returns the cells and a note per run left out of the means."""
    conditions = check_where(where, [build_row(record, name) for record, name in zip(records, labels)])
    members: dict[tuple[Any, Any], list[tuple[str, RunRecord]]] = {}
    cells: dict[tuple[Any, Any], Cell] = {}
    skipped: list[str] = []
    for record, name in zip(records, labels):
        if not all(matches(build_row(record, name), cond) for cond in conditions):
            continue
        figures = headline(record) if record.status == "complete" else {}
        if not record.config:  # nothing tells which cell it belongs to
            skipped.append(f"{name} ({record.status}, no config)")
            continue
        key = (place(record.config, pivot.rows), place(record.config, pivot.columns))
        cell = cells.setdefault(key, Cell([], []))
        if figures.get(metric) is None:
            cell.skipped += 1
            skipped.append(f"{name} ({record.status})")
            continue
        members.setdefault(key, []).append((name, record))
        cell.labels.append(name)
        cell.figures.append(figures)
    for group in members.values():
        _check_seeds_only(group)
    return cells, skipped


def _notes(metric: str, skipped: list[str]) -> list[str]:
    notes = [f"cell: mean ± std (n=runs averaged, sample std; {NA} for one run) over seeds of {metric}; params left "
             "= 1 − sparsity of the final model; measured speedup of the compacted (else final) model; both means "
             "over the same runs"]
    if skipped:  # failed, running or unreadable runs are counted, never averaged
        notes.append(f"{len(skipped)} run{'s' if len(skipped) > 1 else ''} not averaged (no {metric}): "
                     f"{', '.join(skipped)}")
    return notes


def _axis(places: list[tuple[str, Any]], name: str) -> tuple[str, list[Any]]:
    """An axis's header and its cells' values: the key and raw values when one key places every run, else the name
    given to --pivot and `leaf=value` labels (a sweep mixing macs and params budgets)."""
    keys = {key for key, _ in places}
    if len(keys) == 1:
        return keys.pop(), [value for _, value in places]
    return name, [label(*place) for place in places]


def pivot_tables(records: list[RunRecord], labels: list[str], spec: str, metric: str = DEFAULT_METRIC,
                 where: Sequence[str] = ()) -> tuple[Table, Table]:
    """The grid (rows × columns of display cells, for markdown and LaTeX) and the same cells one per row with
    full-precision values (for CSV and JSON)."""
    pivot, metric = parse_pivot(spec, records), check_metric(metric)
    cells, skipped = _cells(records, labels, pivot, metric, where)
    rows, columns = _order([r for r, _ in cells]), _order([c for _, c in cells])
    row_spec, column_spec = (part.strip() for part in spec.split(","))
    row_header, row_values = _axis(rows, row_spec)
    column_header, column_values = _axis(columns, column_spec)
    grid, flat = [], []
    for row, row_value in zip(rows, row_values):
        line = [row_value]
        for column, column_value in zip(columns, column_values):
            stats = cells[row, column].stats(metric) if (row, column) in cells else None
            line.append(NA if stats is None else cell_text(metric, stats))
            if stats is not None:
                flat.append({row_header: row_value, column_header: column_value, **stats})
        grid.append(line)
    title = f"{metric} by {row_header} and {column_header}"
    # Column headers always say what the budget is (`macs=2`): a bare number would not.
    grid_table = Table([row_header, *(label(*c) for c in columns)], grid, title=title,
                       footnotes=_notes(metric, skipped))
    flat_columns = [row_header, column_header, "n", f"{metric}_mean", f"{metric}_std", "params_left_mean",
                    "measured_speedup_mean", "not_averaged", "runs"]
    return grid_table, Table.from_records(flat_columns, flat)
