"""The tracker interface (`logger=NAME`), the typed records a run hands every tracker, and the tracker registry."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from progprune_cli.config.schema import TrackerConfig
from progprune_cli.errors import UserError
from progprune_cli.registry import Registry

INSTALL = "pip install -e '.[trackers]'"


@dataclass(frozen=True)
class RunStarted:
    """What a tracker knows of a run before its stages: its folder, where the runs root is (the default home of a
    local store), the config as flat `key.path → value` parameters, and the sweep folder of a sweep's job."""

    run_dir: Path
    runs_root: Path
    params: dict[str, str | int | float | bool]
    sweep_dir: Path | None = None


@dataclass(frozen=True)
class MetricRow:
    """One row of metrics.csv, numbers as the file holds them (an empty cell is left out of `values`)."""

    stage: str
    event: str  # epoch | prune (a pruning step)
    epoch: int
    iteration: int  # optimizer steps since the start of the run: every tracker's step axis
    values: dict[str, float]

    def metrics(self) -> dict[str, float]:
        """The row's numbers under the names every tracker gives them: `<stage>/<event>/<column>`."""
        return {f"{self.stage}/{self.event}/{column}": value for column, value in self.values.items()}


@dataclass(frozen=True)
class RunFinished:
    """A finished run: the final figures (`<model>/<figure>` → number, from results.json) and its report files
    (results.json, results.md, run.log, plots), relative to the run folder."""

    figures: dict[str, float]
    files: tuple[Path, ...]
    plots: tuple[Path, ...]


# What a tracker records of each model in results.json: these figures (a dotted path in the model's record).
FIGURES = ("accuracy.train", "accuracy.val", "accuracy.test", "loss.test", "params.total", "params.nonzero",
           "params.physical", "params.sparsity", "params.compression", "macs.effective", "macs.theoretical_speedup",
           "latency.measured_speedup", "latency.throughput_sps", "latency.batch1_ms.median",
           "latency.eval_runtime_s.median")


def figures_of(models: dict[str, Any]) -> dict[str, float]:
    """results.json's `models` as `<model>/<figure>` → number, for the FIGURES each model has."""
    out: dict[str, float] = {}
    for model, record in models.items():
        for figure in FIGURES:
            value: Any = record
            for part in figure.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{model}/{figure}"] = float(value)
    return out


class Tracker(ABC):
    """One experiment tracker a run reports to: it receives the records above in order (start, rows..., finish),
    then close. Any exception it raises switches it off for the rest of the run (trackers/guard.py)."""

    package: ClassVar[str]  # the optional package it needs (imported only when the tracker is chosen)

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg

    @classmethod
    def require(cls, key: str) -> ModuleType:
        """Its package, or the one-line error naming the extra that installs it (before any run folder exists)."""
        try:
            return importlib.import_module(cls.package)
        except ImportError:
            raise UserError(f"{key}: needs the {cls.package} package: {INSTALL}") from None

    @abstractmethod
    def start(self, run: RunStarted) -> None:
        """Open the tracker's run and record the config."""

    @abstractmethod
    def rows(self, rows: list[MetricRow]) -> None:
        """Record metrics.csv rows it has not been given yet (per-epoch metrics and pruning steps)."""

    @abstractmethod
    def finish(self, run: RunFinished) -> None:
        """Record the final figures and the report files."""

    @abstractmethod
    def close(self, status: str) -> None:
        """Flush and close; `status` is status.json's (complete, failed, interrupted)."""


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """A nested config as `a.b.c → value` (a list or null as its text): what trackers take as parameters."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, (str, int, float, bool)):
            out[name] = value
        else:
            out[name] = "null" if value is None else str(value)
    return out


# conf/logger/<name>.yaml ↔ TRACKERS.register("<name>", schema) in trackers/<name>.py.
TRACKERS: Registry[type[Tracker]] = Registry("logger", TrackerConfig)
