"""What every stage writes through: the console and run.log, per-stage metric rows, atomic checkpoints."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from progprune_cli.atomic import append_text, copy_atomically, open_nofollow, write_atomic
from progprune_cli.checkpoints import NotACheckpoint, load_checkpoint, save_checkpoint
from progprune_cli.errors import UserError
from progprune_cli.results.record import strict_dumps
from progprune_cli.results.schema import METRIC_COLUMNS, TRAINING_STAGES


def write_json(path: Path, value: Any) -> None:
    """Strict JSON (a NaN or Infinity is an error, never written), replaced atomically."""
    write_atomic(path, strict_dumps(value))


@dataclass
class StageIO:
    """A run folder seen by the stages: log lines go to the console and run.log, rows to logs/<stage>.csv."""

    run_dir: Path
    console: Console
    # Given metrics.csv's rows (as text) each time it is rewritten: the run's trackers (trackers/guard.py).
    on_metrics: Callable[[list[dict[str, str]]], None] | None = None
    # (val accuracy, val loss) of each stage whose rows, as last written, end with an epoch: the loop measured them
    # on the stage's final weights, so the evaluate stage need not pass over the val split again.
    final_val: dict[str, tuple[float, float]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)

    def log(self, message: str) -> None:
        self.console.log(message, markup=False, highlight=False)
        append_text(self.run_dir / "run.log", message + "\n")

    def detail(self, message: str) -> None:
        """A line for run.log only: detail that would flood the terminal (e.g. per-layer pruning results)."""
        append_text(self.run_dir / "run.log", message + "\n")

    @contextmanager
    def progress(self, label: str, total: int) -> Iterator[Callable[[], None]]:
        """A progress bar of `total` steps on a terminal, yielding its advance(); nothing (the per-epoch log lines
        suffice) when output is piped."""
        if not self.console.is_terminal:
            yield lambda: None
            return
        bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=self.console, transient=True)
        task = bar.add_task(label, total=total)
        with bar:
            yield lambda: bar.advance(task)

    def checkpoint(self, name: str) -> Path:
        return self.run_dir / "checkpoints" / f"{name}.pt"

    def source_checkpoint(self, name: str) -> Path:
        """Where try_load reads checkpoints/<name>.pt: in this run folder (a follower rank reads rank 0's)."""
        return self.checkpoint(name)

    def save(self, name: str, state: dict[str, Any]) -> Path:
        """Write checkpoints/<name>.pt atomically (temp file, fsync, rename): the previous one stays until then."""
        return save_checkpoint(self.checkpoint(name), state)

    def load(self, name: str) -> dict[str, Any]:
        return load_checkpoint(self.checkpoint(name))

    def try_load(self, name: str) -> dict[str, Any] | None:
        """The checkpoint, or None when it is missing or unreadable (e.g. truncated by a full disk): a stage is
        done only when its final checkpoint loads, not when a file exists. A file that would run code is refused."""
        path = self.source_checkpoint(name)
        if not path.exists() and not path.is_symlink():
            return None
        try:
            return load_checkpoint(path)
        except NotACheckpoint as error:  # truncated or corrupt: this stage (or step) is simply done again
            self.log(f"{Path('checkpoints', path.name)} is unreadable ({error.reason}); not using it")
            return None

    def copy_in(self, source: Path, name: str) -> None:
        """Copy a cached checkpoint into this run, atomically, after checking it loads as plain tensors."""
        load_checkpoint(source)
        copy_atomically(source, self.checkpoint(name))

    def write_rows(self, stage: str, rows: list[dict[str, Any]]) -> None:
        """Replace the stage's rows, then rebuild metrics.csv from every stage's rows (in pipeline order). A file
        that does not read as rows is left out here: each finished stage rewrites (or checks) its own when the run
        reaches it (restore_rows), so the last rebuild holds every stage."""
        write_atomic(self.run_dir / "logs" / f"{stage}.csv", _csv(rows))
        last = rows[-1] if rows else {}
        figures = (last.get("val_acc"), last.get("val_loss"))
        if last.get("stage") == stage and last.get("event") == "epoch" and all(type(f) is float for f in figures):
            self.final_val[stage] = figures  # type: ignore[assignment]
        else:
            self.final_val.pop(stage, None)
        merged: list[dict[str, Any]] = []
        for name in TRAINING_STAGES:
            merged += self.read_rows(name) or []
        write_atomic(self.run_dir / "metrics.csv", _csv(merged))
        if self.on_metrics is not None:
            self.on_metrics(merged)

    def read_rows(self, stage: str) -> list[dict[str, Any]] | None:
        """logs/<stage>.csv as rows, or None when it is missing or is not a metrics table (corrupt, truncated)."""
        path = self.run_dir / "logs" / f"{stage}.csv"
        try:
            with os.fdopen(open_nofollow(path, os.O_RDONLY), encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                if tuple(reader.fieldnames or ()) != METRIC_COLUMNS:
                    return None
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error):
            return None
        # A short or long line (a write cut off) reads as a row with a None value or a None key.
        return None if any(None in row or None in row.values() for row in rows) else rows

    def restore_rows(self, stage: str, output: str, final: dict[str, Any]) -> None:
        """A finished stage's rows from its final checkpoint (checkpoints/<output>.pt) back into logs/ (whatever
        happened to that file since); a checkpoint of an older progprune has none, and then the file must still
        read as rows."""
        if final.get("rows") is not None:
            try:
                self.write_rows(stage, checked_rows(final["rows"]))
            except ValueError as error:
                raise UserError(f"{self.checkpoint(output)}: its metric rows are unreadable ({error})") from None
        elif self.read_rows(stage) is None:
            raise UserError(f"{Path('logs', stage + '.csv')} in {self.run_dir} is unreadable and the stage's final "
                            f"checkpoint {Path('checkpoints', output + '.pt')} (from an older progprune) holds no "
                            "rows to rebuild it; delete that checkpoint to run the stage again")


def checked_rows(rows: Any) -> list[dict[str, Any]]:
    """Metric rows read back from a checkpoint: a list of dicts over METRIC_COLUMNS holding plain values."""
    if not isinstance(rows, list):
        raise ValueError(f"rows: expected a list, found {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not set(row) <= set(METRIC_COLUMNS):
            raise ValueError(f"rows[{i}]: not a row of {', '.join(METRIC_COLUMNS)}")
        if not all(v is None or isinstance(v, (str, int, float)) for v in row.values()):
            raise ValueError(f"rows[{i}]: holds a value that is not a number or a string")
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=METRIC_COLUMNS, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in METRIC_COLUMNS})
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
