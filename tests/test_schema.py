"""The results schema: exact JSON round trips, strict writing (no NaN), lenient reading, one home for constants."""

from __future__ import annotations

import ast
import copy
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from run_fixture import make_run  # noqa: E402

from progprune_cli.results import record, schema  # noqa: E402
from progprune_cli.results.record import SchemaError, UnknownVersion  # noqa: E402
from progprune_cli.results.schema import (  # noqa: E402
    Latency,
    ModelRecord,
    PruningLog,
    PruningStep,
    Results,
    Splits,
    Spread,
)

SCHEMA_FILES = (Path(schema.__file__), Path(record.__file__))


@pytest.fixture
def doc(tmp_path: Path) -> dict[str, Any]:
    """A complete results.json as the runner writes it (the fixture writes it through the schema)."""
    return json.loads((make_run(tmp_path / "run") / "results.json").read_text())


def test_round_trip_is_exact(doc: dict[str, Any]) -> None:
    results = Results.from_json(doc)
    assert results.to_json() == doc
    assert Results.from_json(results.to_json()) == results
    assert json.loads(results.dumps()) == doc
    # Same text as the writer always wrote: indent 1, keys in contract order, a trailing newline.
    assert results.dumps() == json.dumps(doc, indent=1) + "\n"


def test_records_are_typed(doc: dict[str, Any]) -> None:
    results = Results.from_json(doc)
    fin = results.models["finetuned"]
    assert fin.accuracy == Splits(train=0.97, val=0.95, test=0.94)
    assert fin.latency.eval_runtime_s == Spread(median=0.01, p10=0.01 * 0.9, p90=0.01 * 1.1)
    assert results.layers[0].shape == (32, 1, 3, 3)
    assert results.run.overrides == ()
    assert results.pruning is not None and results.pruning.steps[1].layers == {}
    assert [key for key, _ in results.ordered_models()] == ["original", "pruned", "finetuned", "dense_long"]
    assert results.final_model() == "finetuned"


def test_held_steps_keep_their_keys_and_others_gain_none() -> None:
    log = {"strategy": "weight", "granularity": "weight", "mode": "sparsity", "target": 0.9, "scope": "layer",
           "schedule": "cubic", "achieved_sparsity": 0.5, "notes": ["held"],
           "steps": [{"index": 0, "epoch": 0, "iteration": 40, "target": 0.5, "achieved": 0.5, "removed": 10,
                      "layers": {"fc.weight": {"target": None, "achieved": 0.5, "nonzero": 5}}},
                     {"index": 1, "epoch": 1, "iteration": 80, "target": 0.9, "achieved": 0.5, "removed": 0,
                      "layers": {}, "held": True, "val_acc": 0.4}]}
    parsed = PruningLog.from_json(log, strict=True)
    assert parsed.steps[1] == PruningStep(index=1, epoch=1, iteration=80, target=0.9, achieved=0.5, removed=0,
                                          held=True, val_acc=0.4)
    assert parsed.steps[0].layers["fc.weight"].target is None
    assert parsed.to_json() == log


@pytest.mark.parametrize("value, shown", [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")])
def test_writing_refuses_non_finite_numbers(value: float, shown: str) -> None:
    results = Results(status="complete", models={"pruned": ModelRecord(loss=Splits(test=value))})
    with pytest.raises(SchemaError) as error:
        results.dumps()
    assert str(error.value) == (f"models.pruned.loss.test is {shown}: results.json is strict JSON, which has no NaN "
                                "or Infinity (a non-finite loss usually means training diverged)")


def test_non_finite_in_a_list_or_the_config_is_named_too() -> None:
    with pytest.raises(SchemaError, match=r"^config\.strategy\.layers\[1\] is nan: "):
        Results(config={"strategy": {"layers": [0.5, math.nan]}}).dumps()


def test_reading_accepts_an_old_nan_and_a_partial_file() -> None:
    # Writers before strict JSON could leave NaN; a reader still shows the rest.
    old = json.loads('{"schema_version": 1, "models": {"original": {"loss": {"test": NaN}}}}')
    record = Results.from_json(old).models["original"]
    assert math.isnan(record.loss.test) and record.accuracy == Splits() and record.latency == Latency()
    partial = Results.from_json({"schema_version": 1, "layers": None, "pruning": None})
    assert partial == Results()


@pytest.mark.parametrize("change, message", [
    (lambda d: d["models"]["original"]["accuracy"].update(test="high"),
     "models.original.accuracy.test: expected a number, found a string 'high'"),
    (lambda d: d["models"]["original"]["params"].update(total=True),
     "models.original.params.total: expected an integer, found true"),
    (lambda d: d["models"]["original"]["params"].update(total=10.5),
     "models.original.params.total: expected an integer, found a number 10.5"),
    (lambda d: d["layers"][0].update(shape="32x1"), "layers[0].shape: expected a list, found a string '32x1'"),
    (lambda d: d["pruning"]["steps"][0].update(layers=[]), "pruning.steps[0].layers: expected an object, found a list"),
    (lambda d: d.update(models={"original": 3}), "models.original: expected an object, found a number 3"),
    (lambda d: d["models"]["original"].update(mask_only="yes"),
     "models.original.mask_only: expected a boolean, found a string 'yes'"),
])
def test_wrong_types_name_the_key(doc: dict[str, Any], change: Any, message: str) -> None:
    bad = copy.deepcopy(doc)
    change(bad)
    with pytest.raises(SchemaError) as error:
        Results.from_json(bad)
    assert str(error.value) == message


def test_other_schema_versions_are_refused() -> None:
    for version, shown in ((2, "2"), ("1", "'1'")):
        with pytest.raises(UnknownVersion) as error:
            Results.from_json({"schema_version": version})
        assert str(error.value) == f"schema_version {shown}, this progprune reads 1"
    with pytest.raises(UnknownVersion, match="^schema_version 'missing', this progprune reads 1$"):
        Results.from_json({"models": {}})
    with pytest.raises(SchemaError, match="^Results: expected an object, found a list$"):
        Results.from_json([])


def test_strict_reading_refuses_unknown_keys_lenient_reading_drops_them() -> None:
    step = {"index": 0, "removed": 3, "layers": {}, "kept_channels": 5}
    with pytest.raises(SchemaError) as error:
        PruningLog.from_json({"steps": [step]}, strict=True, path="pruning")
    assert str(error.value) == ("pruning.steps[0]: unknown key 'kept_channels' "
                                "(add it to progprune_cli/results/schema.py)")
    assert PruningLog.from_json({"steps": [step]}).steps == (PruningStep(index=0, removed=3),)


def test_records_are_frozen() -> None:
    record = ModelRecord(label="x")
    with pytest.raises(AttributeError):
        record.label = "y"  # type: ignore[misc]
    assert replace(record, label="y").label == "y"


def test_order_labels_and_stages_have_one_home() -> None:
    from progprune_cli.report import compare, plots, report_cli, runs, tables

    assert schema.MODEL_ORDER == ("original", "pruned", "finetuned", "compacted", "sparse_kernels", "dense_long",
                                  "scratch")
    assert list(schema.MODEL_LABELS) == list(schema.MODEL_ORDER)
    assert schema.MODEL_LABELS["finetuned"] == "pruned+finetuned"
    assert schema.STATUS_STAGES == ("build", "train", "prune", "finetune", "dense_long", "scratch", "evaluate",
                                    "report")
    assert report_cli.SCHEMA_VERSION is schema.SCHEMA_VERSION and runs.STATUSES is schema.STATUSES
    assert plots.STAGES == ("train", "prune", "finetune") and list(plots.SHADES) == list(plots.STAGES)
    assert compare.DEPLOYED_MODELS is schema.DEPLOYED_MODELS and tables.label is schema.model_label
    # No reader keeps a copy of its own any more.
    for module in (tables, plots, compare, runs, report_cli):
        assert not {"ORDER", "LABELS", "MODEL_ORDER", "MODEL_LABELS"} & set(vars(module)), module.__name__


def test_writer_takes_labels_and_columns_from_the_schema() -> None:
    from progprune_cli.stages import evaluate, io

    assert evaluate.MODEL_LABELS is schema.MODEL_LABELS and evaluate.MODEL_ORDER is schema.MODEL_ORDER
    assert list(io.METRIC_COLUMNS) == list(schema.METRIC_COLUMNS)


def test_model_label_prefers_the_schema_then_the_record() -> None:
    assert schema.model_label("dense_long", ModelRecord(label="dense (same epochs)")) == "dense, same epochs"
    assert schema.model_label("quantized", ModelRecord(label="int8")) == "int8"
    assert schema.model_label("quantized", ModelRecord()) == "quantized"


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_schema_imports_only_the_standard_library(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    # schema.py's one import of its own package: the record machinery split out of it.
    outside = {name.split(".")[0] for name in imported - {"progprune_cli.results.record"}}
    assert outside - {"__future__"} <= set(sys.stdlib_module_names), imported


def test_readers_and_schema_import_without_torch() -> None:
    code = ("import sys; import progprune_cli.results.schema, progprune_cli.report.tables, "
            "progprune_cli.report.markdown, progprune_cli.report.console, progprune_cli.report.runs, "
            "progprune_cli.report.compare, progprune_cli.report.fit, progprune_cli.report.summary, "
            "progprune_cli.report.plots; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"


def test_the_model_zoo_and_runner_import_without_torchvision() -> None:
    # torchvision's import pulls in torch._dynamo (~2.4 s on 2 cores); only the datasets and the two torchvision
    # models that need it pay for it, when they are built.
    code = ("import sys; import progprune_cli.models, progprune_cli.runner, progprune_cli.stages.checks, "
            "progprune_cli.preflight; print('torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"
