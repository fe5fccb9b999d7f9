"""What a search optimises: `search.objectives` entries (`NAME:max|min`) and their values, read from results.json's
figures of the final model (torch-free: the runner, the config check and the sweep summary share it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from progprune_cli.errors import UserError
from progprune_cli.results.schema import DEPLOYED_MODELS, ModelRecord, Results


def _deployed(doc: Results, final: str) -> ModelRecord:
    """The form the final model is deployed in (compacted, sparse kernels) where the run has one."""
    return doc.models[next(m for m in (*DEPLOYED_MODELS, final) if m in doc.models)]


# name → its value in a finished run's results (the final model; latency and size of its deployed form, as the
# sweep summary and `compare` show them), None where the run did not measure it.
READERS: dict[str, Callable[[Results, str], float | int | None]] = {
    "test_accuracy": lambda doc, final: doc.models[final].accuracy.test,
    "val_accuracy": lambda doc, final: doc.models[final].accuracy.val,
    "latency_ms": lambda doc, final: _deployed(doc, final).latency.batch1_ms.median,
    "macs": lambda doc, final: doc.models[final].macs.effective,
    "params": lambda doc, final: doc.models[final].params.nonzero,
    "sparsity": lambda doc, final: doc.models[final].params.sparsity,
}
DIRECTIONS = {"max": "maximize", "min": "minimize"}  # ours → Optuna's


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
        raise UserError(f"search.objectives: empty; give at least one NAME:max|min, NAME one of {', '.join(READERS)}")
    parsed = []
    for i, entry in enumerate(entries):
        name, _, way = str(entry).partition(":")
        if name not in READERS or way not in DIRECTIONS:
            raise UserError(f"search.objectives[{i}]: got {entry!r}; expected NAME:max or NAME:min with NAME one of "
                            f"{', '.join(READERS)}")
        parsed.append(Objective(name, way == "max"))
    if len({o.name for o in parsed}) < len(parsed):
        raise UserError(f"search.objectives: {', '.join(map(str, entries))}: an objective is named twice")
    return parsed


def objective_values(doc: Results, objectives: list[Objective]) -> list[float | None]:
    """Each objective's value in a finished run (None where it was not measured, or the run has no model)."""
    final = doc.final_model()
    if final is None:
        return [None for _ in objectives]
    values = []
    for objective in objectives:
        value = READERS[objective.name](doc, final)
        values.append(float(value) if value is not None else None)
    return values
