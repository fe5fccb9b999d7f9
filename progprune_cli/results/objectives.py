"""The values of `search.objectives` in a finished run, read from results.json's figures of the final model
(torch-free: the Hydra task returns them to the sweeper, the sweep summary shows them)."""

from __future__ import annotations

from collections.abc import Callable

from progprune_cli.config.search import Objective
from progprune_cli.results.schema import DEPLOYED_MODELS, ModelRecord, Results, Splits


def _deployed(doc: Results, final: str) -> ModelRecord:
    """The form the final model is deployed in (compacted, sparse kernels) where the run has one."""
    return doc.models[next(m for m in (*DEPLOYED_MODELS, final) if m in doc.models)]


# name → its value in a finished run's results: the final model's, with latency of its deployed form (as the sweep
# summary and `compare` show them); None where the run did not measure it.
READERS: dict[str, Callable[[Results, str], float | int | None]] = {
    "test_accuracy": lambda doc, final: doc.models[final].accuracy.test,
    "val_accuracy": lambda doc, final: doc.models[final].accuracy.val,
    # A classifier has no perplexity: None, which a search reports as a failed trial, never as a score.
    "test_perplexity": lambda doc, final: (doc.models[final].perplexity or Splits()).test,
    "val_perplexity": lambda doc, final: (doc.models[final].perplexity or Splits()).val,
    "latency_ms": lambda doc, final: _deployed(doc, final).latency.batch1_ms.median,
    "macs": lambda doc, final: doc.models[final].macs.effective,
    "params": lambda doc, final: doc.models[final].params.nonzero,
    "sparsity": lambda doc, final: doc.models[final].params.sparsity,
}


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
