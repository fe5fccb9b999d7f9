"""What every stage writes through: the console and run.log, per-stage metric rows, atomic checkpoints."""

from __future__ import annotations

import csv
import io
import pickle
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from progprune_cli.atomic import copy_atomically, write_atomic
from progprune_cli.errors import UserError
from progprune_cli.results.schema import METRIC_COLUMNS, TRAINING_STAGES, strict_dumps


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint or cache entry, read with `weights_only=True`: tensors and plain values only, never code."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on a foreign file's pickle protocol: not for the user
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" not in str(error).lower() and "weights_only" not in str(error):
            raise
        raise UserError(f"{path}: refused to load: it holds pickled objects that would run code when read, not "
                        "plain tensors; delete it (or the run folder) if you did not put it there") from None


def write_json(path: Path, value: Any) -> None:
    """Strict JSON (a NaN or Infinity is an error, never written), replaced atomically."""
    write_atomic(path, strict_dumps(value))


@dataclass
class StageIO:
    """A run folder seen by the stages: log lines go to the console and run.log, rows to logs/<stage>.csv."""

    run_dir: Path
    console: Console

    def __post_init__(self) -> None:
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)

    def log(self, message: str) -> None:
        self.console.log(message, markup=False, highlight=False)
        with open(self.run_dir / "run.log", "a") as handle:
            handle.write(message + "\n")

    def detail(self, message: str) -> None:
        """A line for run.log only: detail that would flood the terminal (e.g. per-layer pruning results)."""
        with open(self.run_dir / "run.log", "a") as handle:
            handle.write(message + "\n")

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
        buffer = io.BytesIO()
        torch.save(state, buffer)
        path = self.checkpoint(name)
        write_atomic(path, buffer.getvalue())
        return path

    def load(self, name: str) -> dict[str, Any]:
        return load_checkpoint(self.checkpoint(name))

    def try_load(self, name: str) -> dict[str, Any] | None:
        """The checkpoint, or None when it is missing or unreadable (e.g. truncated by a full disk): a stage is
        done only when its final checkpoint loads, not when a file exists. A file that would run code is refused."""
        path = self.source_checkpoint(name)
        if not path.exists():
            return None
        try:
            return load_checkpoint(path)
        except UserError:
            raise
        except Exception as error:  # truncated or corrupt: this stage (or step) is simply done again
            self.log(f"{Path('checkpoints', path.name)} is unreadable ({type(error).__name__}); not using it")
            return None

    def copy_in(self, source: Path, name: str) -> None:
        """Copy a cached checkpoint into this run, atomically, after checking it loads as plain tensors."""
        load_checkpoint(source)
        copy_atomically(source, self.checkpoint(name))

    def write_rows(self, stage: str, rows: list[dict[str, Any]]) -> None:
        """Replace the stage's rows, then rebuild metrics.csv from every stage's rows (in pipeline order)."""
        write_atomic(self.run_dir / "logs" / f"{stage}.csv", _csv(rows))
        merged: list[dict[str, Any]] = []
        for name in TRAINING_STAGES:
            path = self.run_dir / "logs" / f"{name}.csv"
            if path.exists():
                merged += list(csv.DictReader(path.open()))
        write_atomic(self.run_dir / "metrics.csv", _csv(merged))


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
