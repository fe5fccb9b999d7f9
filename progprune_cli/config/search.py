"""`search.objectives`: what a run returns to a search, each `NAME:max|min`; the names and how they are read."""

from __future__ import annotations

from dataclasses import dataclass

from progprune_cli.errors import UserError

# The figures of a finished run's final model a search can optimise (results/objectives.py reads each one).
OBJECTIVE_NAMES = ("test_accuracy", "val_accuracy", "test_perplexity", "val_perplexity", "latency_ms", "macs",
                   "params", "sparsity")
_WAYS = {"max": True, "min": False}


@dataclass(frozen=True)
class Objective:
    """One entry of `search.objectives`."""

    name: str
    maximize: bool

    @property
    def direction(self) -> str:
        """Optuna's word for it (hydra.sweeper.direction)."""
        return "maximize" if self.maximize else "minimize"

    def __str__(self) -> str:
        return f"{self.name}:{'max' if self.maximize else 'min'}"


def parse_objectives(entries: list[str]) -> list[Objective]:
    """`[val_accuracy:max, latency_ms:min]` as Objectives; a one-line UserError naming the first bad entry."""
    if not entries:
        raise UserError("search.objectives: empty; give at least one NAME:max|min, NAME one of "
                        f"{', '.join(OBJECTIVE_NAMES)}")
    parsed = []
    for i, entry in enumerate(entries):
        name, _, way = str(entry).partition(":")
        if name not in OBJECTIVE_NAMES or way not in _WAYS:
            raise UserError(f"search.objectives[{i}]: got {entry!r}; expected NAME:max or NAME:min with NAME one of "
                            f"{', '.join(OBJECTIVE_NAMES)}")
        parsed.append(Objective(name, _WAYS[way]))
    if len({o.name for o in parsed}) < len(parsed):
        raise UserError(f"search.objectives: {', '.join(map(str, entries))}: an objective is named twice")
    return parsed
