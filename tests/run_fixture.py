"""Write a fake but schema-complete run folder (docs/run-folder.md) for the readers' tests; results.json is
written through the schema's records, so a fixture cannot drift from what the runner writes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from progprune_cli.results.schema import METRIC_COLUMNS, MODEL_LABELS, Results


def model_entry(label: str, acc: float, nonzero: int, median_s: float, total: int = 10858,
                physical: int | None = None, mask_only: bool = True) -> dict[str, Any]:
    """One MODEL record with round numbers so tests can assert exact output."""
    physical = total if physical is None else physical
    return {
        "label": label,
        "epochs": 10,
        "accuracy": {"train": acc + 0.02, "val": acc, "test": acc - 0.01},
        "loss": {"train": 0.1, "val": 0.2, "test": 0.25},
        "params": {"total": total, "nonzero": nonzero, "physical": physical,
                   "sparsity": 1 - nonzero / total, "compression": total / nonzero},
        "macs": {"dense": 200000, "effective": int(200000 * nonzero / total),
                 "theoretical_speedup": total / nonzero},
        "latency": {"device": "cpu", "threads": 1, "warmup": 3, "repeats": 10, "eval_batch_size": 256,
                    "eval_samples": 270, "latency_batch": 1, "timing": "interleaved",
                    "eval_runtime_s": {"median": median_s, "p10": median_s * 0.9, "p90": median_s * 1.1},
                    "batch1_ms": {"median": 0.2, "p10": 0.18, "p90": 0.22},
                    "throughput_sps": 270 / median_s, "measured_speedup": 0.01 / median_s},
        "size_bytes": {"dense": 45000, "sparse": 25000, "compacted": None},
        "mask_only": mask_only,
    }


BASE_CONFIG: dict[str, Any] = {
    "seed": 0, "device": "auto",
    "dataset": {"name": "digits", "val_fraction": 0.15, "test_fraction": 0.15},
    "model": {"name": "two_conv_cnn"},
    "optimizer": {"name": "adam", "lr": 0.001, "clip_grad_norm": None, "l1": 0.0, "l2": 0.0},
    "schedule": {"name": "cubic", "start": 0, "end": None, "frequency": 1, "unit": "epoch"},
    "strategy": {"name": "weight", "sparsity": 0.5, "threshold": None, "scope": "layer"},
    "train": {"epochs": 10, "batch_size": 32}, "prune": {"epochs": 5, "batch_size": 32},
    "finetune": {"epochs": 3, "batch_size": 32},
    "evaluate": {"batch_size": 256, "latency_batch": 1, "warmup": 3, "repeats": 10, "threads": 1},
}


def make_run(path: Path, *, status: str = "complete", overrides: list[str] | None = None,
             config: dict[str, Any] | None = None, sparsity: float = 0.5, finetuned_acc: float = 0.95,
             finetuned_median_s: float = 0.01, with_results: bool = True) -> Path:
    """A run folder: .hydra/, status.json, metrics.csv and (when complete) results.json."""
    path.mkdir(parents=True, exist_ok=True)
    (path / ".hydra").mkdir(exist_ok=True)
    cfg = copy.deepcopy(BASE_CONFIG)
    for key, value in (config or {}).items():
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides or []))
    (path / "status.json").write_text(json.dumps(
        {"status": status, "stage": None if status == "complete" else "prune",
         "started": "2026-11-29T20:00:00", "updated": "2026-11-29T20:01:00",
         "error": "boom" if status == "failed" else None}))
    (path / "metrics.csv").write_text(
        ",".join(METRIC_COLUMNS) + "\n"
        "train,epoch,0,40,0.001,0.9,0.7,0.5,0.85,,0.0\n"
        "prune,prune,0,40,,,,,,0.25,0.25\n"
        "prune,epoch,0,80,0.001,0.4,0.9,0.3,0.92,0.25,0.25\n"
        f"prune,prune,1,80,,,,,,{sparsity},{sparsity}\n"
        f"finetune,epoch,0,120,0.001,0.2,0.96,0.2,{finetuned_acc},{sparsity},{sparsity}\n")
    if status == "complete" and with_results:
        total = 10858
        nonzero = int(round(total * (1 - sparsity)))
        results = {
            "schema_version": 1, "status": "complete",
            "run": {"id": path.name, "started": "2026-11-29T20:00:00", "finished": "2026-11-29T20:01:00",
                    "duration_s": 60.0, "overrides": overrides or [], "seed": cfg["seed"], "device": "cpu",
                    "torch": "2.14.1", "python": "3.11.7", "threads": 1, "train_threads": 2, "git_commit": None,
                    "dense_reused_from": None},
            "config": cfg,
            "pruning": {"strategy": cfg["strategy"]["name"], "granularity": "weight", "mode": "sparsity",
                        "target": sparsity, "scope": "layer", "schedule": "cubic",
                        "achieved_sparsity": sparsity, "notes": [],
                        "steps": [{"index": 0, "epoch": 0, "iteration": 40, "target": 0.25, "achieved": 0.25,
                                   "removed": 2714, "layers": {}},
                                  {"index": 1, "epoch": 1, "iteration": 80, "target": sparsity,
                                   "achieved": sparsity, "removed": 1000, "layers": {}}]},
            "models": {
                "original": model_entry(MODEL_LABELS["original"], 0.96, total, 0.01),
                "pruned": model_entry(MODEL_LABELS["pruned"], 0.90, nonzero, 0.01),
                "finetuned": model_entry(MODEL_LABELS["finetuned"], finetuned_acc, nonzero, finetuned_median_s),
                "dense_long": model_entry(MODEL_LABELS["dense_long"], 0.965, total, 0.01, mask_only=False),
            },
            "layers": [{"name": "conv1", "type": "Conv2d", "shape": [32, 1, 3, 3], "params": 288,
                        "nonzero": 144, "sparsity": 0.5, "macs_dense": 18432, "macs_effective": 9216}],
        }
        # strict: a key the schema does not know is an error here too, so the fixture stays schema-complete.
        (path / "results.json").write_text(Results.from_json(results, strict=True).dumps())
    return path
