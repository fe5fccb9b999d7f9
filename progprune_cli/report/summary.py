"""Sweep summary from the files on disk: summary.md, summary.csv (seeds grouped, Pareto fronts) and pareto.png."""

from __future__ import annotations

import contextlib
import statistics
from pathlib import Path
from typing import Any, Iterator

from progprune_cli.atomic import replace_atomically, write_atomic
from progprune_cli.config.search import Objective, parse_objectives
from progprune_cli.errors import UserError
from progprune_cli.filelock import FileLock
from progprune_cli.report.compare import headline
from progprune_cli.report.render import Table, format_cell, to_csv, to_markdown
from progprune_cli.report.runs import RunRecord, _natural_key, read_run, sweep_runs
from progprune_cli.results.objectives import objective_values
from progprune_cli.results.records import MULTIRUN, searched, sweep_jobs, sweep_task
from progprune_cli.results.schema import MODEL_LABELS

FIGURES = ("test_acc", "test_acc_vs_orig", "test_acc_vs_long", "sparsity", "nonzero", "physical",
           "macs_effective", "measured_speedup", "runtime_median_s")
GROUPED = ("test_acc", "test_acc_vs_orig", "test_acc_vs_long", "sparsity", "runtime_median_s")
FRONTS = ("pareto_sparsity", "pareto_latency")
_SEED = "seed"
NOT_STARTED = "not started"  # a job of the sweep's own job list with no run folder yet
SEARCH_NOTE = ("A search (hydra/sweeper=progprune_optuna): one job per trial run so far, trial i of the study in "
               "folder i; its objectives' values are columns of the table.")


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """`key=value` → {key: value as typed}; `+key` and `key` name the same config value."""
    parsed: dict[str, str] = {}
    for item in overrides:
        key, _, value = item.partition("=")
        parsed[key.lstrip("+")] = value
    return parsed


def changed(dicts: list[dict[str, str]]) -> list[str]:
    """Keys whose value (or presence) is not the same in every dict, in order of first appearance."""
    keys = dict.fromkeys(k for d in dicts for k in d)
    return [k for k in keys if len({d.get(k, "\0missing") for d in dicts}) > 1]


def pareto_front(points: list[tuple[float, ...] | None],
                 maximize: tuple[bool, ...] = (True, True)) -> list[bool]:
    """True where no other point is at least as good on every axis and better on one; None is never on it."""
    signs = [1 if m else -1 for m in maximize]
    flipped = [None if p is None else tuple(v * sign for v, sign in zip(p, signs)) for p in points]

    def dominated(p: tuple[float, ...]) -> bool:
        return any(q is not None and q != p and all(a >= b for a, b in zip(q, p)) for q in flipped)

    return [p is not None and not dominated(p) for p in flipped]


def _point(row: dict[str, Any], x: str) -> tuple[float, float] | None:
    acc, other = row.get("test_acc"), row.get(x)
    return (acc, other) if isinstance(acc, (int, float)) and isinstance(other, (int, float)) else None


def search_objectives(records: list[RunRecord]) -> list[Objective]:
    """The search.objectives the sweep's runs returned (the first complete run's config); [] when none says."""
    for record in records:
        entries = record.config.get("search.objectives")
        if record.document is not None and isinstance(entries, list):
            try:
                return parse_objectives(entries)
            except UserError:
                return []
    return []


def mark_search(rows: list[dict[str, Any]], records: list[RunRecord], objectives: list[Objective]) -> None:
    """Each row gets its objectives' values, `pareto_objectives` (no other trial at least as good on every
    objective and better on one) and `best` (the same: for one objective, the best value, ties included)."""
    values = [objective_values(r.document, objectives) if r.document is not None else [None] * len(objectives)
              for r in records]
    points = [tuple(v) if all(x is not None for x in v) else None for v in values]  # type: ignore[misc]
    front = pareto_front(points, tuple(o.maximize for o in objectives))
    for row, value, point, on in zip(rows, values, points, front):
        row.update({o.name: x for o, x in zip(objectives, value)})
        row["pareto_objectives"] = on if point is not None else None
        row["best"] = row["pareto_objectives"]  # shown for one objective only, where the front is the best value


def job_table(records: list[RunRecord], objectives: list[Objective] | None = None) -> Table:
    """One row per job: the overrides that differ, status, figures, and membership of each Pareto front; with
    `objectives` (a search) also their values, their Pareto front and the best trial."""
    overrides = [parse_overrides(r.overrides) for r in records]
    keys = changed(overrides)
    rows = []
    for record, parsed in zip(records, overrides):
        figures = headline(record)
        row = {"job": record.path.name, **{k: parsed.get(k) for k in keys}, "status": record.status,
               **{f: figures.get(f) for f in FIGURES}}
        rows.append(row | ({"error": record.error} if record.error else {}))
    by_sparsity = pareto_front([_point(r, "sparsity") for r in rows])
    by_latency = pareto_front([_point(r, "runtime_median_s") for r in rows], maximize=(True, False))
    for row, on_sparsity, on_latency in zip(rows, by_sparsity, by_latency):
        # No figures (failed, running): not a candidate, shown as "-" rather than "false".
        row["pareto_sparsity"] = on_sparsity if _point(row, "sparsity") else None
        row["pareto_latency"] = on_latency if _point(row, "runtime_median_s") else None
    # vs dense_long only when some job trained one; a column of dashes would only add width.
    figures = [f for f in FIGURES if f != "test_acc_vs_long" or any(r[f] is not None for r in rows)]
    searched_columns: list[str] = []
    if objectives:
        mark_search(rows, records, objectives)
        searched_columns = [o.name for o in objectives if o.name not in figures] + ["pareto_objectives"] + \
            (["best"] if len(objectives) == 1 else [])
    columns = ["job", *keys, "status", *figures, *FRONTS, *searched_columns] + \
        (["error"] if any("error" in r for r in rows) else [])
    return Table.from_records(columns, rows)


def mean_std(key: str, values: list[float]) -> str | None:
    """`mean ± std (n)` with the sample std (n-1); one value has no spread to show."""
    if not values:
        return None
    text = format_cell(key, statistics.fmean(values))
    if len(values) > 1:
        text += f" ± {format_cell(key, statistics.stdev(values), signed=False)}"
    return f"{text} ({len(values)})"


def seed_table(records: list[RunRecord], jobs: Table) -> Table | None:
    """Jobs whose overrides differ only by seed=, as mean ± std (n); None when no two jobs share a group."""
    groups: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
    for record, row in zip(records, jobs.records()):
        parsed = parse_overrides(record.overrides)
        key = tuple(sorted((k, v) for k, v in parsed.items() if k != _SEED))
        groups.setdefault(key, []).append(row)
    if all(len(members) < 2 for members in groups.values()):
        return None
    keys = [c for c in changed([dict(g) for g in groups]) if c != _SEED]
    rows = []
    for group, members in groups.items():
        row: dict[str, Any] = {k: dict(group).get(k) for k in keys}
        row["jobs"] = ", ".join(m["job"] for m in members)
        for figure in GROUPED:
            row[figure] = mean_std(figure, [m[figure] for m in members if m.get(figure) is not None])
        rows.append(row)
    grouped = [f for f in GROUPED if any(r[f] is not None for r in rows)]
    return Table.from_records([*keys, "jobs", *grouped], rows)


def search_section(jobs: Table, objectives: list[Objective]) -> list[str]:
    """summary.md's account of a search: its objectives, the best trial (one objective) or the Pareto front."""
    rows = jobs.records()
    front = [r for r in rows if r.get("pareto_objectives")]
    named = ", ".join(map(str, objectives))

    def trial(row: dict[str, Any]) -> str:
        values = ", ".join(f"{o.name} {format_cell(o.name, row[o.name])}" for o in objectives)
        return f"job {row['job']} ({values})"

    if not front:
        return ["## Search\n", f"Objectives {named}: no trial has a value yet.\n"]
    if len(objectives) == 1:
        return ["## Search\n", f"Objective {named}. Best trial: " + "; ".join(trial(r) for r in front) +
                " (`best` in the table).\n"]
    return ["## Search\n", f"Objectives {named}. Pareto front of the objectives ({len(front)} of {len(rows)} jobs; "
            "none of the others is at least as good on every objective): " + "; ".join(trial(r) for r in front) +
            " (`pareto_objectives` in the table).\n"]


def render_summary(name: str, jobs: Table, seeds: Table | None, note: str | None = None,
                   objectives: list[Objective] | None = None) -> str:
    """summary.md; `note` says in one line when the job list is only the folders that exist; `objectives` (a
    search) adds its best trial or Pareto front."""
    counts: dict[str, int] = {}
    for row in jobs.records():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    status = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no run folders yet"
    parts = [f"# Sweep {name}\n", f"{len(jobs.rows)} jobs: {status}. Accuracy is the test accuracy of the final "
             f"model ({MODEL_LABELS['finetuned']}); `test_acc_vs_orig` compares it with the dense original, "
             "`test_acc_vs_long` with dense_long (as many epochs).\n", *([f"{note}\n"] if note else []),
             "## Jobs\n", to_markdown(jobs)]
    if objectives:
        parts += search_section(jobs, objectives)
    if seeds is not None:
        parts += ["## Seeds grouped: mean ± std (n)\n", to_markdown(seeds)]
    parts += ["## Pareto fronts\n", "`pareto_sparsity`: no other job has both higher accuracy and higher sparsity. "
              "`pareto_latency`: none has higher accuracy and a lower eval runtime median (measured).\n",
              "![Pareto fronts](pareto.png)\n"]
    return "\n".join(parts)


def draw_pareto(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy vs sparsity and vs measured latency; front points red and joined, the rest grey."""
    # Figure + Agg canvas, not pyplot: no global backend state in a runner that may plot elsewhere.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    panels = (("sparsity", "pareto_sparsity", "sparsity of the final model"),
              ("runtime_median_s", "pareto_latency", "eval runtime median, s (measured)"))
    for ax, (x, flag, label) in zip(fig.subplots(1, 2), panels):
        points = [(p[1], p[0], r[flag], r["job"]) for r in rows if (p := _point(r, x)) is not None]
        rest = [(px, py) for px, py, on, _ in points if not on]
        front = sorted((px, py, job) for px, py, on, job in points if on)
        if rest:
            ax.scatter(*zip(*rest), color="0.65", label="job")
        if front:
            ax.plot([p[0] for p in front], [p[1] for p in front], "o-", color="tab:red", label="Pareto front")
            for px, py, job in front:
                ax.annotate(job, (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no complete jobs yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (final model)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    replace_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


@contextlib.contextmanager
def _locked(sweep_dir: Path) -> Iterator[None]:
    # Read-and-write under one lock, so the last job to finish also writes last: no older summary wins.
    lock = FileLock(sweep_dir / ".summary.lock")
    try:
        lock.acquire()
    except OSError:  # a filesystem that refuses locks (some network ones): atomic writes still keep each file whole
        yield
        return
    try:
        yield
    finally:
        lock.release()


def sweep_records(sweep_dir: Path) -> tuple[list[RunRecord], str | None]:
    """One record per job: the run folders that exist, and a `not started` one for each job of the sweep's own
    job list (multirun.yaml) that has no run folder; with a note when that list cannot be read."""
    records = [read_run(path) for path in sweep_runs(sweep_dir)]
    if searched(sweep_dir):
        return records, SEARCH_NOTE
    try:
        task = sweep_task(sweep_dir)
        planned = sweep_jobs(task, sweep_dir / MULTIRUN) if task is not None else None
    except UserError as error:
        return records, f"The job list is the run folders that exist: {error}."
    if planned is None:
        return records, (f"The job list is the run folders that exist: no {MULTIRUN} (an older sweep), so a job "
                         "that never started is not listed.")
    found = {record.path.name for record in records}
    records += [RunRecord(path=sweep_dir / str(i), status=NOT_STARTED, overrides=overrides)
                for i, overrides in enumerate(planned) if str(i) not in found]
    return sorted(records, key=lambda record: _natural_key(record.path)), None


def write_sweep_summary(sweep_dir: Path) -> Path:
    """Write summary.md, summary.csv and pareto.png into `sweep_dir`; returns the path of summary.md."""
    sweep_dir = Path(sweep_dir)
    with _locked(sweep_dir):
        records, note = sweep_records(sweep_dir)
        objectives = search_objectives(records) if note == SEARCH_NOTE else []
        jobs = job_table(records, objectives)
        seeds = seed_table(records, jobs)
        write_atomic(sweep_dir / "summary.csv", to_csv(jobs))
        draw_pareto(jobs.records(), sweep_dir / "pareto.png")
        summary = sweep_dir / "summary.md"
        write_atomic(summary, render_summary(sweep_dir.name, jobs, seeds, note, objectives))
    return summary
