"""Tensor-only compacted checkpoints, load_model, and `progprune export`: ONNX checked against PyTorch."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import importlib.util

import numpy as np
import pytest
import torch
import yaml
from conftest import component, composed, progprune
from torch import nn


from progprune_cli.data import DataInfo, build_data, inputs
from progprune_cli.errors import UserError
from progprune_cli.export import load_model, save_compacted
from progprune_cli.export import cli as export_cli
from progprune_cli.measure import onnx_export
from progprune_cli.export.saved import read_checkpoint, rebuild_compacted
from progprune_cli.models import MODELS, build_model
from progprune_cli.pruning.masks import Masks, apply_masks
from progprune_cli.pruning.strategies import build_strategy
from progprune_cli.results.status import config_hash

INFO = DataInfo(channels=1, height=8, width=8, num_classes=10)
BUILT_IN = ("mlp", "resnet_tiny", "simple_cnn", "two_conv_cnn")  # the small models the runner ships with
MNIST = DataInfo(channels=1, height=28, width=28, num_classes=10)
CIFAR = DataInfo(channels=3, height=32, width=32, num_classes=10)
# Builders of other code's architectures (any torchvision or timm model, the user's own class) have none of their
# own to export; tests/test_user_models.py builds them and exports a user's class.
GENERIC = {"custom", "hf", "timm", "torchvision"}
OWN = [name for name in MODELS.names() if name not in GENERIC]
# The data shape each registered model is exported on: the shape its family was published for (the toys: INFO).
SHAPES: dict[str, DataInfo] = {
    **dict.fromkeys(BUILT_IN, INFO), "lenet300": MNIST, "lenet5": MNIST,
    **dict.fromkeys(("resnet20", "resnet32", "resnet56", "resnet110", "vgg11", "vgg16", "resnet18", "mobilenet_v2"),
                    CIFAR)}
# Language models: sequences of 16 tokens of a 11-symbol vocabulary (dataset=text's shape, made small).
TEXT = DataInfo(channels=1, height=1, width=16, num_classes=11, vocab=11)
SHAPES.update(gpt=TEXT, lstm=TEXT, vit=CIFAR)
# Exported at a small size (the export's cost grows with depth, the code path does not).
SMALL: dict[str, dict[str, Any]] = {"gpt": {"n_layer": 1, "n_embd": 32, "n_head": 2}, "lstm": {"hidden": 16},
                                    "vit": {"layers": 1, "hidden_dim": 32, "mlp_dim": 64, "heads": 2}}
SYNTHETIC = DataInfo(channels=1, height=8, width=8, num_classes=4)  # conf/dataset/synthetic.yaml's shape
INSTALL = "pip install 'progprune[export]' (or: pip install onnx onnxruntime onnxscript)"
needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "onnxscript")),
    reason="the export extra is not installed: pip install 'progprune[export]'")


pytestmark = pytest.mark.usefixtures("one_thread")


def dense(name: str, info: DataInfo = INFO) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(component("model", name, **SMALL.get(name, {})), info)
    # Non-trivial batch-norm statistics, so a lost buffer would show in the outputs.
    model.train()
    with torch.no_grad():
        model(info.example(16, seed=0))
    return model.eval()


def compacted(name: str, info: DataInfo = INFO) -> tuple[nn.Module, Masks]:
    """Every other channel of every unit removed by the structured strategy (the first layer too)."""
    strategy = build_strategy(component("strategy", "structured", keep_first=False))
    model = dense(name, info)
    masks = {u: torch.arange(m.numel()) % 2 == 0 for u, m in strategy.initial_masks(model, info).items()}
    assert masks, f"{name}: structured finds no unit to compact"
    apply_masks(model, strategy.to_param_masks(model, masks))
    return strategy.compact(model, masks, info).eval(), masks


def sample_input(info: DataInfo = INFO, samples: int = 20) -> torch.Tensor:
    return info.example(samples, seed=1)


def shape(name: str) -> DataInfo:
    assert name in SHAPES, f"model {name} has no input shape to export it on: add it to SHAPES in {__file__}"
    return SHAPES[name]


def run_config(model: str = "two_conv_cnn", strategy: str | None = "structured") -> dict[str, Any]:
    """The composed config as .hydra/config.yaml holds it: the real conf/ with tiny overrides."""
    return composed("dataset=synthetic", f"model={model}", "device=cpu", "train.epochs=1", "prune.epochs=1",
                    "finetune.epochs=1", *([f"+strategy={strategy}"] if strategy else []))


def fake_run(folder: Path, config: dict[str, Any], status: str = "complete") -> Path:
    """A run folder's files as progprune leaves them, without training."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "status.json").write_text(json.dumps({"status": status, "stage": None if status == "complete"
                                                    else "prune", "error": None}))
    if status == "complete":
        (folder / "results.json").write_text("{}")
    return folder


class Marker:
    """Unpickling this writes a file: what a hostile checkpoint would do instead."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def plant(path: Path, marker: Path) -> None:
    torch.save({"module": Marker(marker)}, path)


# -- the compacted checkpoint -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILT_IN)
def test_compacted_model_round_trips_through_a_tensor_only_file(name: str, tmp_path: Path) -> None:
    small, masks = compacted(name)
    path = tmp_path / "compacted.pt"
    save_compacted(path, small, masks, component("model", name), INFO)
    data = torch.load(path, weights_only=True)  # loads without allowing any code
    assert set(data) == {"format", "version", "stage", "model", "info", "unit_masks", "widths", "state_dict"}
    # The model's own keys with their values: the architecture rebuilds without reading any YAML.
    own = {"simple_cnn": {"channels": 32}, "two_conv_cnn": {"channels": 32}, "mlp": {"hidden": [128, 64]},
           "resnet_tiny": {"width": 16}}
    assert data["model"] == {"name": name, "options": {"weights": None, **own[name]}}  # every model's weights key
    assert DataInfo(**data["info"]) == INFO
    assert {k: v.tolist() for k, v in data["unit_masks"].items()} == {k: v.tolist() for k, v in masks.items()}
    loaded = rebuild_compacted(read_checkpoint(path), path).eval()
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in small.state_dict().items()}
    x = sample_input()
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))


def test_load_model_returns_each_saved_model_of_a_run(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", run_config("resnet_tiny"))
    small, masks = compacted("resnet_tiny")
    save_compacted(run / "checkpoints" / "compacted.pt", small, masks, component("model", "resnet_tiny"), INFO)
    original = dense("resnet_tiny", SYNTHETIC)
    torch.save({"model": original.state_dict(), "masks": None, "stage": "train"}, run / "checkpoints" / "original.pt")
    x = sample_input()
    with torch.no_grad():
        loaded = load_model(run, which="compacted")  # the compacted file carries its data shape
        assert torch.equal(loaded(x), small(x)) and not loaded.training
        loaded = load_model(run, which="original")  # a mask-only one learns it from the run's dataset
        assert torch.equal(loaded(x), original(x)) and not loaded.training
    path = run / "checkpoints" / "original.pt"
    with pytest.raises(UserError) as caught:
        load_model(run, which="original", info=INFO)
    assert str(caught.value).startswith(f"{path}: weights do not fit the rebuilt ResNetTiny: Error(s) in loading "
                                        "state_dict for ResNetTiny: size mismatch for fc.weight")
    with pytest.raises(UserError) as caught:
        load_model(run, which="finetuned")
    assert str(caught.value) == (f"RUN_DIR: {run} has no finetuned model (checkpoints/finetuned.pt missing): the "
                                 "run did not save it")
    with pytest.raises(UserError) as caught:
        load_model(run, which="best")
    assert str(caught.value) == ("model: got 'best'; choose one of original, pruned, finetuned, compacted, dense_long, "
                                 "scratch")


@needs_onnx
def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = fake_run(tmp_path / "run", run_config())
    marker, proof = tmp_path / "pwned", tmp_path / "proof"
    path = run / "checkpoints" / "compacted.pt"
    plant(path, proof)
    torch.load(path, weights_only=False)  # the planted file is live: plain unpickling runs its code
    assert proof.exists()
    plant(path, marker)
    expected = (f"{path}: refused to load: it holds pickled objects that would run code when read, not plain "
                "tensors; delete it (or the run folder) if you did not put it there (older progprune saved "
                "compacted.pt as a pickled module; the finetuned model has the same weights, masked)")
    with pytest.raises(UserError) as caught:
        load_model(run, which="compacted")
    assert str(caught.value) == expected
    assert export_cli.main([str(run), "--model", "compacted"]) == 2
    assert capsys.readouterr().err == f"progprune export: error: {expected}\n"
    assert not marker.exists()


def test_an_older_pickled_compacted_module_is_refused_too(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", run_config())
    small, _ = compacted("two_conv_cnn")
    torch.save({"module": small, "stage": "compact"}, run / "checkpoints" / "compacted.pt")
    with pytest.raises(UserError) as caught:
        load_model(run, which="compacted")
    assert str(caught.value).startswith(f"{run}/checkpoints/compacted.pt: refused to load: it holds pickled objects")
    # Another model's checkpoint gets the same refusal without the compacted.pt note.
    torch.save({"model": small}, run / "checkpoints" / "finetuned.pt")
    with pytest.raises(UserError) as caught:
        load_model(run, which="finetuned", info=INFO)
    assert str(caught.value) == (f"{run}/checkpoints/finetuned.pt: refused to load: it holds pickled objects that "
                                 "would run code when read, not plain tensors; delete it (or the run folder) if you "
                                 "did not put it there")


def test_truncated_checkpoint_is_one_line(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", run_config())
    path = run / "checkpoints" / "compacted.pt"
    small, masks = compacted("two_conv_cnn")
    save_compacted(path, small, masks, component("model", "two_conv_cnn"), INFO)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError) as caught:
        load_model(run, which="compacted")
    assert str(caught.value).startswith(f"{path}: not a readable torch checkpoint (RuntimeError: PytorchStreamReader")
    assert "\n" not in str(caught.value)


# -- ONNX --------------------------------------------------------------------------------------------------------

CHECK = 4  # samples export_onnx checks (all 4, then 1 alone); few, as the cost is the export, not the check
# Exporting takes >= 5 s a form here (torch.export is single-threaded Python): marked slow, as test_model_zoo does.
SLOW_EXPORTS = {"mobilenet_v2", "resnet18"}


def onnx_outputs(path: Path, *xs: torch.Tensor) -> list[np.ndarray]:
    """The file's outputs on each of `xs`, from one onnxruntime session."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [session.run(["logits"], {"input": x.numpy()})[0] for x in xs]


def test_every_registered_model_has_an_export_shape() -> None:
    missing, stale = sorted(set(OWN) - set(SHAPES)), sorted(set(SHAPES) - set(OWN))
    assert not missing, f"models with no input shape to export them on: {missing}; add each one's shape to SHAPES"
    assert not stale, f"SHAPES names models that are not registered: {stale}; remove them"


# Exporting a big model costs 5-12 s here (torch.export and the ONNX passes are single-threaded Python), so the
# deeper members of a family are not exported again: resnet32/56/110 are resnet20's code with more blocks, vgg16 is
# vgg11's with more layers (FAMILY; the test below checks they hold no module type their first member lacks), and
# torchvision's two big models are exported in the form users export after channel pruning (compacted) only.
FAMILY = {"resnet32": "resnet20", "resnet56": "resnet20", "resnet110": "resnet20", "vgg16": "vgg11"}
COMPACTED_ONLY = {"resnet18", "mobilenet_v2"}
# Channel strategies refuse language models: nothing to compact. The ViT's compaction (its MLP's width) is
# torch-pruning's generic path, exported for every CNN here; its own code path is the dense export.
DENSE_ONLY = {"gpt", "lstm", "vit"}
FORMS = [pytest.param(name, form, marks=[pytest.mark.slow] if name in SLOW_EXPORTS else [])
         for name in OWN if name not in FAMILY
         for form in ("dense", "compacted") if not (name in COMPACTED_ONLY and form == "dense")
         and not (name in DENSE_ONLY and form == "compacted")]


def module_types(name: str) -> set[type]:
    return {type(m) for m in dense(name, shape(name)).modules()}


def test_every_model_is_exported_or_is_a_deeper_copy_of_one_that_is() -> None:
    exported = {p.values[0] for p in FORMS}
    assert exported | set(FAMILY) == set(OWN) and not exported & set(FAMILY)
    assert {p.values[0] for p in FORMS if p.values[1] == "dense"} >= {"resnet20", "vgg11", "lenet300", "lenet5"}
    for deeper, first in FAMILY.items():
        assert first in exported and module_types(deeper) <= module_types(first), deeper
        assert shape(deeper) == shape(first)


@needs_onnx
@pytest.mark.parametrize(("name", "form"), FORMS)
def test_every_registered_model_exports_and_matches_pytorch(name: str, form: str, tmp_path: Path) -> None:
    info = shape(name)
    model = dense(name, info) if form == "dense" else compacted(name, info)[0]
    out = tmp_path / f"{name}.onnx"
    x = sample_input(info, CHECK)
    exported, checked = onnx_export.export_onnx(model, x, out)
    assert (exported.exporter, exported.opset) == ("dynamo", 18)
    assert checked.samples == CHECK and checked.max_abs_diff <= 1e-4
    import onnx

    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", *info.shape]
    # Checked independently here, from the file on disk: batch 3 is a size neither the trace (2) nor the check used.
    batches = [x[:batch] for batch in (1, 3, CHECK)]
    with torch.no_grad():
        expected = [model(batch).numpy() for batch in batches]
    for got, want in zip(onnx_outputs(out, *batches), expected, strict=True):
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4


@needs_onnx
def test_without_onnxscript_the_torchscript_exporter_is_used(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    real = onnx_export._optional
    monkeypatch.setattr(onnx_export, "_optional", lambda name: None if name == "onnxscript" else real(name))
    model = compacted("resnet_tiny")[0]
    exported, checked = onnx_export.export_onnx(model, sample_input(), tmp_path / "m.onnx")
    assert exported.exporter == "torchscript" and checked.max_abs_diff <= 1e-4
    x = sample_input()[:1]
    with torch.no_grad():
        assert np.abs(onnx_outputs(tmp_path / "m.onnx", x)[0] - model(x).numpy()).max() <= 1e-4


@needs_onnx
def test_an_export_that_disagrees_with_pytorch_is_refused_and_nothing_is_written(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from onnx import numpy_helper

    real = onnx_export.to_onnx

    def corrupted(model: nn.Module, example: torch.Tensor) -> onnx_export.Exported:
        exported = real(model, example)
        weight = exported.proto.graph.initializer[0]  # one weight of the graph, nudged
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) + 0.5, weight.name))
        return exported

    monkeypatch.setattr(onnx_export, "to_onnx", corrupted)
    out = tmp_path / "export" / "m.onnx"
    with pytest.raises(UserError) as caught:
        onnx_export.export_onnx(dense("two_conv_cnn"), sample_input(), out)
    assert re.fullmatch(r"ONNX model disagrees with PyTorch on 20 test inputs: max \|diff\| [0-9.e+-]+ > 0\.0001; "
                        rf"refusing to write {re.escape(str(out))}", str(caught.value)), str(caught.value)
    assert not out.exists() and not out.parent.exists()


@needs_onnx
def test_missing_onnxruntime_is_one_line_naming_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails as if not installed
    run = fake_run(tmp_path / "run", run_config())
    assert export_cli.main([str(run)]) == 2
    assert capsys.readouterr().err == ("progprune export: error: --format onnx needs onnxruntime, which is not "
                                       f"installed: {INSTALL}\n")
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert export_cli.main([str(run)]) == 2
    assert capsys.readouterr().err == ("progprune export: error: --format onnx needs onnx and onnxruntime, which are "
                                       f"not installed: {INSTALL}\n")


@needs_onnx
@pytest.mark.parametrize("args, make, expected", [
    (["{run}", "--format", "tflite"], "complete", "--format: got 'tflite'; choose one of onnx, hf"),
    (["{run}", "--model", "best"], "complete",
     "--model: got 'best'; choose one of original, pruned, finetuned, compacted, dense_long, scratch"),
    (["{run}/nope"], "complete", "RUN_DIR: {run}/nope does not exist"),
    (["{tmp}"], "complete", "RUN_DIR: {tmp} is not a run folder (no .hydra/config.yaml)"),
    (["{run}"], "running", "RUN_DIR: {run} is not a complete run (status running in stage prune); "
                           "export a finished run"),
    (["{run}", "--model", "compacted"], "weight",
     "--model compacted: RUN_DIR: {run} has no compacted model (checkpoints/compacted.pt missing): strategy weight "
     "prunes single weights (mask-only); only channel and head strategies compact (structured, activation, heads, "
     "or granularity=channel)"),
    (["{run}", "--model", "finetuned"], "dense",
     "--model finetuned: RUN_DIR: {run} has no finetuned model (checkpoints/finetuned.pt missing): it is a dense "
     "baseline (no strategy), so it has only original"),
    (["{run}", "--check-samples", "0"], "complete", "--check-samples: got 0; must be >= 1"),
    (["{run}", "--bogus"], "complete", "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], make: str, expected: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    config = run_config(strategy={"weight": "weight", "dense": None}.get(make, "structured"))
    run = fake_run(tmp_path / "run", config, status="running" if make == "running" else "complete")
    fill = {"run": str(run), "tmp": str(tmp_path)}
    assert export_cli.main([a.format(**fill) for a in args]) == 2
    assert capsys.readouterr().err == f"progprune export: error: {expected.format(**fill)}\n"
    assert not (run / "export").exists()


@needs_onnx
@pytest.mark.slow
def test_progprune_export_on_a_real_run(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = progprune("train", "+strategy=structured", "dataset=synthetic", "train.epochs=1", "prune.epochs=1",
                       "finetune.epochs=1", "evaluate.repeats=2", "evaluate.warmup=1",
                       "evaluate.dense_baseline=false", cwd=workdir)
    assert result.returncode == 0, result.stderr
    (run,) = [p for p in (workdir / "runs").glob("*/*") if (p / "results.json").is_file()]
    assert torch.load(run / "checkpoints" / "compacted.pt", weights_only=True)["format"] == "progprune.compacted"

    result = progprune("export", str(run), cwd=workdir)
    assert result.returncode == 0, result.stderr
    out, side = run / "export" / "compacted.onnx", run / "export" / "compacted.json"
    lines = result.stdout.splitlines()
    assert lines[0] == f"wrote {out} (compacted two_conv_cnn, ONNX opset 18, dynamo exporter)"
    assert re.fullmatch(r"checked with onnxruntime on 64 test inputs: max \|diff\| [0-9.e-]+ \(<= 0\.0001\)", lines[1])
    assert lines[2] == f"sidecar: {side}" and len(lines) == 3

    meta = json.loads(side.read_text())
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert meta["config_hash"] == config_hash(config) == json.loads((run / "status.json").read_text())["config_hash"]
    assert meta["run_id"] == run.name == json.loads((run / "results.json").read_text())["run"]["id"]
    assert meta["input"] == {"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32", "pixel_range": None,
                             "normalization": None}
    assert (meta["model"], meta["file"], meta["check"]["samples"]) == ("compacted", "compacted.onnx", 64)
    from progprune_cli.config import load_run_config

    cfg = load_run_config(config)
    data = build_data(cfg.dataset, cfg.seed)
    assert meta["output"]["shape"] == ["batch", 4]
    assert meta["class_names"] == (list(getattr(data.info, "classes", ())) or None)  # synthetic: none, or "0".."3"

    # The file on disk, against the loader's model, on the run's own test split.
    x = inputs(data.test)
    small, masked = load_model(run, which="compacted"), load_model(run, which="finetuned")
    with torch.no_grad():
        assert np.abs(onnx_outputs(out, x)[0] - small(x).numpy()).max() <= 1e-4
        # The compacted model computes what the masked one does (the runner checked this in float64).
        assert (small(x) - masked(x)).abs().max() <= 1e-5
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in masked.parameters())

    # A place that cannot be written (a folder /proc will not hold) is one line, not a traceback (in this process:
    # the export above ran through the installed command already).
    assert export_cli.main([str(run), "--out", "/proc/nope/x.onnx"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("progprune export: error: --out: cannot write /proc/nope")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
