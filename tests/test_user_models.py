"""The user's own model (issue 17): a class of their own by `model._target_`, any torchvision or timm architecture,
and `model.weights` for every model; each run through the real conf/, the bad input as the one line a user sees."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY, dataset_splits, model_of, progprune, resumable_copy
from progprune_cli import cli
from progprune_cli.checkpoints import load_checkpoint
from progprune_cli.config.load import load_component
from progprune_cli.data import DataInfo
from progprune_cli.distributed import World
from progprune_cli.errors import UserError
from progprune_cli.export import load_model
from progprune_cli.export.cli import main as export_main
from progprune_cli.models.from_torchvision import torchvision_ends
from progprune_cli.optim.losses import build_loss
from progprune_cli.parts import model_for_run, original_kind
from progprune_cli.stages.accuracy import evaluate

# What a user writes: the README's worked example, plus three things a user gets wrong.
MYNET = '''\
"""My model: two conv-BN-ReLU blocks, global average pooling, a classifier."""
import torch
from torch import nn

WIDTH = 3


class Net(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Broken(nn.Module):
    def __init__(self, width: int = 3) -> None:
        raise ValueError(f"width must be even, got {width}")


class Flat(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)
'''
USER = ["model=custom", "model._target_=mynet.Net", "+model.width=8"]
SYNTHETIC = DataInfo(channels=1, height=8, width=8, num_classes=4)  # TINY's data


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user")
    (folder / "mynet.py").write_text(MYNET)
    return folder


@pytest.fixture(scope="module")
def sweep(work: Path) -> Path:
    """The user's class through the installed command, one job per strategy (weight, structured)."""
    done = progprune("train", "-m", *TINY, *USER, "+strategy=weight,structured", f"hydra.sweep.dir={work / 'sweep'}",
                     cwd=work)
    assert done.returncode == 0, done.stderr
    return work / "sweep"


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process started in a folder holding mynet.py, as a user's would be; sys.path and the imported mynet are
    put back afterwards."""
    (tmp_path / "mynet.py").write_text(MYNET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop("mynet", None)
    yield tmp_path
    sys.modules.pop("mynet", None)


@pytest.mark.slow
def test_a_users_class_is_trained_pruned_and_compacted(sweep: Path) -> None:
    for job, strategy in ((sweep / "0", "weight"), (sweep / "1", "structured")):
        results = json.loads((job / "results.json").read_text())
        assert results["status"] == "complete" and results["pruning"]["strategy"] == strategy
        run = results["run"]
        assert (run["model_source"], run["weights"], run["original"]) == ("custom:mynet.Net", None, "trained")
        # width from +model.width, in_channels and num_classes from the data
        assert {row["name"]: row["shape"] for row in results["layers"]} == \
            {"conv1": [8, 1, 3, 3], "conv2": [16, 8, 3, 3], "fc": [4, 16]}
        assert "dataset synthetic · model custom:mynet.Net · seed 0" in (job / "results.md").read_text()
    compacted = json.loads((sweep / "1" / "results.json").read_text())["models"]["compacted"]["params"]
    assert compacted["physical"] < compacted["total"]


@pytest.mark.slow
def test_resuming_a_users_class_needs_trust_targets(sweep: Path, work: Path, tmp_path: Path) -> None:
    run = resumable_copy(sweep / "0", tmp_path).resolve()
    refused = progprune("resume", str(run), cwd=work)
    assert (refused.returncode, refused.stderr) == (2, (
        f"progprune: error: {run}/.hydra/overrides.yaml: model._target_=mynet.Net: sets a _target_ (code to import: "
        f"mynet.Net); resume takes one from a folder only with --trust-targets (progprune resume --trust-targets "
        f"{run}); nothing was run\n"))
    assert not (run / "results.json").exists()
    resumed = progprune("resume", "--trust-targets", str(run), cwd=work)
    assert resumed.returncode == 0, resumed.stderr
    assert f"progprune: resume imports mynet.Net (from {run}/.hydra/overrides.yaml)" in resumed.stderr
    assert json.loads((run / "results.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_load_model_and_export_build_a_users_class_only_when_trusted(sweep: Path, user_folder: Path,
                                                                     tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    job = sweep / "1"  # structured: it has a compacted model
    refusal = (f"RUN_DIR: {job}: rebuilding its model or data imports mynet.Net (a _target_ in the run's config); "
               "load it only if you trust that code: trust_targets=True (progprune export --trust-targets)")
    for which in ("compacted", "finetuned"):
        with pytest.raises(UserError) as caught:
            load_model(job, which)
        assert str(caught.value) == refusal
    assert "mynet" not in sys.modules  # refused before anything imported it
    assert export_main([str(job)]) == 2
    assert capsys.readouterr().err == f"progprune export: error: {refusal}\n"

    compacted = load_model(job, "compacted", trust_targets=True)
    finetuned = load_model(job, "finetuned", trust_targets=True)
    assert type(finetuned).__module__ == "mynet" and type(finetuned).__name__ == "Net"
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(compacted(x), finetuned(x), atol=1e-5)
    assert compacted.conv2.out_channels < finetuned.conv2.out_channels
    out = tmp_path / "net.onnx"
    assert export_main([str(job), "--trust-targets", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out} (compacted custom:mynet.Net, ONNX opset 18")


@pytest.mark.slow
def test_weights_with_zero_epochs_make_the_loaded_model_the_original(sweep: Path, work: Path,
                                                                     user_folder: Path) -> None:
    state = load_checkpoint(sweep / "0" / "checkpoints" / "finetuned.pt")["model"]
    save_file({k: v.contiguous() for k, v in state.items()}, work / "net.safetensors")
    torch.save(state, work / "net.pt")
    shutil.copy(work / "net.safetensors", work / "copy.safetensors")  # the same weights under another name
    done = progprune("train", "-m", *TINY, *USER, "train.epochs=0",
                     "model.weights=net.safetensors,net.pt,copy.safetensors", f"hydra.sweep.dir={work / 'loaded'}",
                     cwd=work)
    assert done.returncode == 0, done.stderr

    sys.path.insert(0, str(user_folder))
    from mynet import Net  # the saved model evaluated directly, on the run's own test split

    model = Net(in_channels=1, num_classes=4, width=8)
    model.load_state_dict(state)
    test = dataset_splits("synthetic", {}, seed=0).test
    accuracy, loss = evaluate(model, test, build_loss("cross_entropy"), torch.device("cpu"), world=World())
    reused = []
    for job, name in enumerate(("net.safetensors", "net.pt", "copy.safetensors")):
        folder = work / "loaded" / str(job)
        results = json.loads((folder / "results.json").read_text())
        sha = hashlib.sha256((work / name).read_bytes()).hexdigest()
        assert results["run"]["weights"] == {"file": str(work / name), "sha256": sha, "head_replaced": False,
                                             "adapted": []}
        assert results["run"]["original"] == "loaded"
        assert results["models"]["original"]["accuracy"]["test"] == accuracy
        assert results["models"]["original"]["loss"]["test"] == pytest.approx(loss, rel=1e-6)
        said = (f"train: train.epochs=0: the original is custom:mynet.Net as loaded from {work / name} (sha256 "
                f"{sha[:12]}), not trained here")
        assert (said in (folder / "run.log").read_text()) == (job < 2)  # job 2 reuses job 0's (below)
        assert "original: the model as loaded from model.weights (train.epochs=0), not trained here" in \
            (folder / "results.md").read_text()
        reused.append(results["run"]["dense_reused_from"])
    # The dense cache keys on the file's content: the copy reuses the first job's entry, the torch file does not.
    assert reused[0] is None and reused[1] is None and reused[2] is not None


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """`progprune train TINY ARGS` in this process: its stderr, once it exited 2 having printed nothing else."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", *TINY, *args])
    captured = capsys.readouterr()
    assert (exit_.value.code, captured.out) == (2, "")
    return captured.err


class Payload:
    """A pickle that runs code when read: it makes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_bad_user_models_and_weights_are_one_line_before_any_folder(user_folder: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    here = user_folder
    torch.manual_seed(0)
    sys.path.insert(0, str(here))
    from mynet import Net

    state = Net(1, 4, 8).state_dict()
    save_file({("head.weight" if k == "fc.weight" else k): v for k, v in state.items()}, here / "keys.safetensors")
    torch.save(Net(1, 4, 16).state_dict(), here / "shapes.pt")
    torch.save({"fc.weight": Payload(here / "marker")}, here / "evil.pt")
    monkeypatch.setenv("TORCH_HOME", str(here / "empty"))
    shapes = ", ".join(f"{k} [{s}] in the file vs [{t}] in the model" for k, s, t in (
        ("conv1.weight", "16, 1, 3, 3", "8, 1, 3, 3"), ("conv1.bias", "16", "8"), ("bn1.weight", "16", "8")))
    cases = [
        (["model=custom"], "model._target_: missing; name your model's class, e.g. model._target_=mynet.Net"),
        (["model=custom", "model._target_=nosuch.Net"],
         "model._target_: no module named 'nosuch' (for nosuch.Net); put the module in the folder progprune is "
         "started in or on PYTHONPATH"),
        (["model=custom", "model._target_=mynet.WIDTH"],
         "model._target_: mynet.WIDTH is not a function or class (found int 3)"),
        ([*USER, "+model.depth=3"], "model.depth: unknown key; mynet.Net takes in_channels, num_classes, width"),
        (["model=custom", "model._target_=mynet.Broken", "+model.width=3"],
         "model._target_: mynet.Broken(width=3) raised ValueError: width must be even, got 3"),
        (["model=custom", "model._target_=mynet.Flat"], "model: custom:mynet.Flat returns [2, 64] for 2 inputs in "
                                                        "training mode; expected a tensor of shape [2, 4] (one logit "
                                                        "per class)"),
        ([*USER, "model.weights=missing.pt"], "model.weights: missing.pt: no such file"),
        ([*USER, "model.weights=keys.safetensors"],
         f"model.weights: {here / 'keys.safetensors'} does not fit custom:mynet.Net: missing keys fc.weight; "
         "unexpected keys head.weight"),
        ([*USER, "model.weights=shapes.pt"],
         f"model.weights: {here / 'shapes.pt'} does not fit custom:mynet.Net: shapes differ: {shapes} (+10 more)"),
        ([*USER, "model.weights=evil.pt"],
         f"model.weights: {here / 'evil.pt'}: refused: it holds pickled objects that would run code when read; save "
         "the state dict alone (torch.save(model.state_dict(), FILE)) or as .safetensors"),
        (["model=torchvision", "model.arch=resnet18", "model.weights=DEFAULT"],
         "model.weights=DEFAULT: ResNet18_Weights.IMAGENET1K_V1 is the file resnet18-f37072fd.pth, which is not in "
         "the torch hub cache, and progprune does not download: put resnet18-f37072fd.pth (from "
         f"https://download.pytorch.org/models/resnet18-f37072fd.pth) in {here / 'empty' / 'hub' / 'checkpoints'}"),
        (["model=torchvision", "model.arch=resnet19"],
         "model.arch=resnet19: not a torchvision classification model (close: resnet18, resnet152, resnet101, "
         "resnet50; all: torchvision.models.list_models(module=torchvision.models))"),
        (["model=torchvision"], "model.arch: missing; choose a torchvision classification model, e.g. "
                                "model.arch=resnet18 (all: torchvision.models.list_models(module=torchvision.models))"),
    ]
    for args, message in cases:
        assert _refused(args, capsys) == f"progprune: error: {message}\n", args
    assert not (here / "runs").exists() and not (here / "marker").exists()


def test_zero_epochs_cannot_pass_off_a_replaced_classifier_as_the_original() -> None:
    from progprune_cli.models.weights import Fitted
    from progprune_cli.config import load_run_config
    from conftest import composed

    cfg = load_run_config(composed(*TINY, "train.epochs=0"))
    fitted = Fitted("w.pt", "0" * 64, True, ("fc: 1000 → 4 outputs (head replaced, initialised at random)",))
    with pytest.raises(UserError) as caught:
        original_kind(cfg, fitted)
    assert str(caught.value) == ("train.epochs=0 makes model.weights the original as loaded, but its classifier does "
                                 "not fit the data: fc: 1000 → 4 outputs (head replaced, initialised at random); "
                                 "train it first (train.epochs >= 1)")
    assert original_kind(cfg, None) == "untrained"
    assert original_kind(cfg, Fitted("w.pt", "0" * 64)) == "loaded"


# The classifier and first conv of a few small library models built for 32×32 grey images of 10 classes.
ARCHS = [
    ("torchvision", "resnet18", "fc", [10, 512], "conv1", [64, 1, 7, 7]),
    ("torchvision", "efficientnet_b0", "classifier.1", [10, 1280], "features.0.0", [32, 1, 3, 3]),
    ("torchvision", "regnet_x_400mf", "fc", [10, 400], "stem.0", [32, 1, 3, 3]),
    ("timm", "resnet10t", "fc", [10, 512], "conv1.0", [24, 1, 3, 3]),
]
GREY32 = DataInfo(channels=1, height=32, width=32, num_classes=10)


@pytest.mark.parametrize(("library", "arch", "head", "head_shape", "stem", "stem_shape"), ARCHS,
                         ids=[f"{a[0]}-{a[1]}" for a in ARCHS])
def test_library_models_are_built_for_the_datas_classes_and_channels(library: str, arch: str, head: str,
                                                                     head_shape: list[int], stem: str,
                                                                     stem_shape: list[int]) -> None:
    model = model_of(library, {"arch": arch}, GREY32)
    assert list(model.get_submodule(head).weight.shape) == head_shape
    assert list(model.get_submodule(stem).weight.shape) == stem_shape
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_every_torchvision_classifier_has_its_head_last_and_its_stem_first() -> None:
    """What torchvision_ends relies on, for every classification model torchvision can build on the meta device
    (the regnets cannot; regnet_x_400mf is built for real above)."""
    import torchvision.models as tvm

    checked = []
    for arch in tvm.list_models(module=tvm):
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # googlenet's and inception's note on their future init
                model = tvm.get_model(arch, weights=None, num_classes=7)
        except NotImplementedError:
            continue
        ends = torchvision_ends(model)
        head, stem = model.get_submodule(str(ends.head)), model.get_submodule(str(ends.stem))
        assert (head.weight.shape[0], stem.in_channels) == (7, 3), arch
        checked.append(arch)
    assert len(checked) >= 60


def test_a_cached_torchvision_weights_file_is_loaded_offline_and_fitted_to_the_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(1)
    imagenet = tvm.resnet18().state_dict()  # what the real file holds: 1000 classes, 3 channels
    torch.save(imagenet, folder / "resnet18-f37072fd.pth")
    cfg = load_component("model", {"name": "torchvision", "arch": "resnet18", "weights": "DEFAULT"})
    model, fitted = model_for_run(cfg, GREY32, seed=0)
    assert fitted is not None
    assert (fitted.file, fitted.head_replaced, fitted.adapted) == (str(folder / "resnet18-f37072fd.pth"), True, (
        "fc: 1000 → 10 outputs (head replaced, initialised at random)",
        "conv1: 3 → 1 input channels (first conv adapted from the weights)"))
    assert fitted.sha256 == hashlib.sha256((folder / "resnet18-f37072fd.pth").read_bytes()).hexdigest()
    assert torch.equal(model.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])
    assert torch.equal(model.conv1.weight, imagenet["conv1.weight"].sum(dim=1, keepdim=True))
    assert model.fc.weight.shape == (10, 512)


def test_timm_weights_from_a_file_or_the_local_hub_cache_are_fitted_to_the_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants
    import timm

    torch.manual_seed(1)
    imagenet = timm.create_model("resnet10t", pretrained=False).state_dict()
    snapshot = tmp_path / "hf" / "models--timm--resnet10t.c3_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    save_file({k: v.contiguous() for k, v in imagenet.items()}, snapshot / "model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    adapted = ("fc: 1000 → 10 outputs (head replaced, initialised at random)",
               "conv1.0: 3 → 1 input channels (first conv adapted from the weights)")
    for weights in ("DEFAULT", str(snapshot / "model.safetensors")):
        cfg = load_component("model", {"name": "timm", "arch": "resnet10t", "weights": weights})
        model, fitted = model_for_run(cfg, GREY32, seed=0)
        assert fitted is not None and (fitted.file, fitted.adapted) == (str(snapshot / "model.safetensors"), adapted)
        assert torch.equal(model.layer4[0].conv2.weight, imagenet["layer4.0.conv2.weight"])
        assert torch.equal(model.conv1[0].weight, imagenet["conv1.0.weight"].sum(dim=1, keepdim=True))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    cfg = load_component("model", {"name": "timm", "arch": "resnet10t", "weights": "DEFAULT"})
    with pytest.raises(UserError) as caught:
        model_for_run(cfg, GREY32, seed=0)
    assert str(caught.value) == ("model.weights=DEFAULT: timm's resnet10t weights are not in the local cache and "
                                 "progprune does not download; download them from "
                                 "https://huggingface.co/timm/resnet10t.c3_in1k and pass the file: "
                                 "model.weights=PATH")


def test_library_code_is_imported_only_when_such_a_model_is_built() -> None:
    import subprocess

    code = ("import sys; import progprune_cli.models; "
            "print(sorted(m for m in ('torchvision', 'timm', 'safetensors') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


def test_a_missing_timm_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # what `import timm` meets where it is not installed
    with pytest.raises(UserError) as caught:
        model_of("timm", {"arch": "resnet10t"}, GREY32)
    assert str(caught.value) == ("model=timm needs the timm package: pip install 'progprune[models]' (in a "
                                 "checkout: pip install -e '.[models]')")


def test_the_untrained_original_is_said_in_the_results_lines() -> None:
    from progprune_cli.report.markdown import run_lines
    from progprune_cli.results.schema import Results, RunInfo, Weights

    weights = Weights(file="/w/net.pt", sha256="ab" * 32, head_replaced=True,
                      adapted=("fc: 1000 → 10 outputs (head replaced, initialised at random)",))
    lines = run_lines(Results(run=RunInfo(model_source="torchvision:resnet18", weights=weights, original="trained")))
    assert " · model torchvision:resnet18 · " in lines[1]
    assert lines[2:] == ["weights /w/net.pt (sha256 abababababab); fc: 1000 → 10 outputs (head replaced, initialised "
                         "at random)"]
    lines = run_lines(Results(run=RunInfo(model_source="progprune:mlp", original="untrained")))
    assert lines[2:] == ["original: UNTRAINED (train.epochs=0 and no model.weights): initialised at random, so its "
                         "figures are not those of a trained model"]
    assert Results.from_json(Results(run=RunInfo(weights=weights)).to_json(), strict=True).run.weights == weights
