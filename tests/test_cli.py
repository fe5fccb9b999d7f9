"""The installed `progprune train` end to end: run folders, tables, bad input, uniqueness, reproducibility."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROGPRUNE, TINY, finished_run, progprune, refused, untimed


def run_dirs(workdir: Path) -> list[Path]:
    return sorted(p for p in (workdir / "runs").glob("[!.]*/*") if p.is_dir())


def test_help_is_fast_path_without_torch(workdir: Path) -> None:
    result = progprune("--help", cwd=workdir)
    assert result.returncode == 0
    assert "progprune train +strategy=weight" in result.stdout
    probe = "import sys, progprune_cli.cli; assert 'torch' not in sys.modules and 'hydra' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0


def test_train_help_lists_each_groups_yamls_not_the_schemas_beside_them(workdir: Path) -> None:
    result = progprune("train", "--help", cwd=workdir)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "strategy: activation, heads, random, sparsegpt, structured, taylor, wanda, weight" in lines
    assert "optimizer: adagrad, adam, rmsprop, sgd, sgd_nesterov" in lines
    assert "base_" not in result.stdout and "  channels: 32" in lines


def test_unknown_command(workdir: Path) -> None:
    result = progprune("prune", cwd=workdir)
    assert result.returncode == 2
    assert result.stderr == ("progprune: error: unknown command 'prune'; choose one of train, sensitivity, resume, "
                             "compare, report, export\n")


@pytest.mark.slow
def test_weight_run_writes_the_three_tables(workdir: Path) -> None:
    result = progprune("train", "+strategy=weight", *TINY, "evaluate.sparse_kernels=true",
                       "evaluate.sparse_min_sparsity=0.4", cwd=workdir)
    assert result.returncode == 0, result.stderr
    (run,) = run_dirs(workdir)
    assert run.name.split("_")[1] == "weight"
    assert not re.search(r"\w+\.py:\d+\s*$", result.stdout, re.M)  # no logging-call locations after log lines
    for name in ("status.json", "metrics.csv", "results.json", "results.md", ".hydra/config.yaml",
                 ".hydra/overrides.yaml", "checkpoints/original.pt", "checkpoints/pruned.pt",
                 "checkpoints/finetuned.pt", "plots/progress.png"):
        assert (run / name).exists(), name
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    results = json.loads((run / "results.json").read_text())
    assert list(results["models"]) == ["original", "pruned", "finetuned", "sparse_kernels", "dense_long"]
    sparse = results["models"]["sparse_kernels"]
    assert sparse["mask_only"] is False and sparse["params"] == results["models"]["finetuned"]["params"]
    assert sparse["accuracy"] == results["models"]["finetuned"]["accuracy"]
    pruned = results["models"]["finetuned"]
    assert pruned["mask_only"] is True
    assert pruned["params"]["physical"] == pruned["params"]["total"] == results["models"]["original"]["params"]["total"]
    assert pruned["params"]["nonzero"] < pruned["params"]["total"]
    assert results["pruning"]["steps"][-1]["target"] == 0.5
    markdown = (run / "results.md").read_text()
    for table in ("## Accuracy", "## Speed", "## Parameters"):
        section = markdown.split(table, 1)[1].split("\n## ", 1)[0]
        rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
        assert [r.split("|")[1].strip() for r in rows][:3] == ["original", "pruned", "pruned+finetuned"]
    assert "mask-only: no kernel uses the zeros" in markdown
    log = (run / "run.log").read_text()
    assert "  conv1.weight: target 50.00%, achieved 50.00%, 144 kept" in log  # per-layer detail of the last step
    assert "allocator: glibc malloc keeps freed blocks under 32 MiB" in log  # this machine's glibc (test_allocator)
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0] == ("stage,event,epoch,iteration,lr,train_loss,train_acc,val_loss,val_acc,"
                       "target_sparsity,achieved_sparsity")
    stages = [r.split(",")[0] for r in rows[1:]]
    assert stages.count("train") == 1 and stages.count("finetune") == 1
    assert sum(1 for r in rows[1:] if r.startswith("prune,prune,")) == 2  # cubic over 2 epochs: 2 steps
    _val_figures_are_each_models_own(run, results)


def _val_figures_are_each_models_own(run: Path, results: dict) -> None:
    """The val figures each training stage's loop measured after its last epoch (which the evaluate stage reuses)
    are exactly what a pass over the val split gives for the model in that stage's final checkpoint."""
    import torch

    from progprune_cli.checkpoints import load_checkpoint
    from progprune_cli.config import load_run_config
    from progprune_cli.distributed import World
    from progprune_cli.parts import build_parts
    from progprune_cli.stages.accuracy import evaluate

    parts = build_parts(load_run_config(json.loads((run / "config.json").read_text())))
    for name in ("original", "pruned", "finetuned", "dense_long"):
        model = parts.make_model()
        model.load_state_dict(load_checkpoint(run / "checkpoints" / f"{name}.pt")["model"])
        accuracy, loss = evaluate(model, parts.data.val, parts.loss_fn, torch.device("cpu"), world=World())
        record = results["models"][name]
        assert (record["accuracy"]["val"], record["loss"]["val"]) == (accuracy, loss), name


@pytest.mark.slow
def test_dense_run_says_so(workdir: Path) -> None:
    result = progprune("train", *TINY, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "dense baseline: no strategy given" in result.stdout
    (run,) = run_dirs(workdir)
    results = json.loads((run / "results.json").read_text())
    assert results["pruning"] is None and list(results["models"]) == ["original"]


BAD_INPUT = [
    (["+strategy=nope"], "progprune: error: strategy=nope: unknown strategy; choose one of "),
    (["+strategy=weight", "+strategy.thresh=0.3"],
     "progprune: error: strategy.thresh: unknown key; allowed keys are "),
    (["+strategy=weight", "strategy.thresh=0.3"],
     "progprune: error: strategy.thresh: unknown key; allowed keys are "),
    (["+strategy=weight", "strategy.sparsity=1.0"], "progprune: error: strategy.sparsity: got 1.0; must be in [0, 1)"),
    (["+strategy=weight", "strategy.threshold=-0.1"], "progprune: error: strategy.threshold: got -0.1; must be >= 0"),
    (["train.epochs=-1"], "progprune: error: train.epochs: got -1; must be >= 0"),
    (["model=nope"], "progprune: error: model=nope: unknown model; choose one of "),
    (["dataset=nope"], "progprune: error: dataset=nope: unknown dataset; choose one of "),
    (["+strategy=weight", "strategy.sparsity=0.5,0.8"],
     "progprune: error: strategy.sparsity=0.5,0.8: a sweep needs -m (progprune train -m ...)"),
    (["optimizer=adam", "optimizer.momentum=0.9"],
     "progprune: error: optimizer.momentum: unknown key; allowed keys are amsgrad, betas, clip_grad_norm, eps, "),
    (["trian.epochs=1"], "progprune: error: trian: unknown key; allowed keys are checkpoint, dataset, device, "
                         "evaluate, expected, finetune, logger, model, optimizer, prune, schedule, search, seed, "),
    (["lr_scheduler=cosine"], "progprune: error: lr_scheduler=cosine: a learning-rate schedule is set per stage: "
                              "lr_scheduler@train.lr_scheduler=cosine (or @prune.lr_scheduler, "),
    (["finetune.lr=0"], "progprune: error: finetune.lr: got 0.0; must be > 0 or null (null: optimizer.lr)"),
    (["dataset=cifar10", "dataset.download=false", "dataset.root=nowhere"],
     "progprune: error: dataset.root: "),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_one_line_no_folder(workdir: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    err = refused("train", *args, cwd=workdir, monkeypatch=monkeypatch, capsys=capsys)
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (workdir / "runs").exists()  # no run folder, no training started


def test_bad_input_from_the_installed_command(workdir: Path) -> None:
    args, message = BAD_INPUT[1]
    result = progprune("train", *args, cwd=workdir)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert not (workdir / "runs").exists()


def test_cuda_without_cuda(workdir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = progprune("train", "device=cuda", cwd=workdir)
    assert result.returncode == 2
    assert result.stderr == ("progprune: error: device: got cuda but CUDA is not available on this machine; "
                             "use device=cpu or device=auto\n")


@pytest.mark.slow
def test_two_runs_started_together_get_two_folders(workdir: Path) -> None:
    args = [PROGPRUNE, "train", *TINY, "train.epochs=0", "evaluate.repeats=1"]
    procs = [subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    runs = run_dirs(workdir)
    assert len(runs) == 2
    assert all((r / "results.json").exists() for r in runs)


WEIGHT = ["+strategy=weight", *TINY, "train.reuse=false"]


@pytest.fixture(scope="module")
def weight_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished_run(tmp_path_factory, *WEIGHT)


@pytest.mark.slow
def test_same_seed_same_results(weight_run: Path, workdir: Path) -> None:
    figures = []
    result = progprune("train", *WEIGHT, cwd=workdir)
    assert result.returncode == 0, result.stderr
    for run in [weight_run, *run_dirs(workdir)]:
        results = json.loads((run / "results.json").read_text())
        figures.append({
            "pruning": untimed(results["pruning"]), "layers": results["layers"],
            "models": {k: {f: v[f] for f in ("accuracy", "loss", "params", "macs")}
                       for k, v in results["models"].items()},
        })
    assert len(figures) == 2 and figures[0] == figures[1]


def test_finished_run_folder_is_never_overwritten(weight_run: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    target = workdir / "mine"
    shutil.copytree(weight_run, target)
    before = (target / "results.json").read_bytes()
    err = refused("train", *WEIGHT, f"hydra.run.dir={target}", cwd=workdir, monkeypatch=monkeypatch, capsys=capsys)
    assert err == f"progprune: error: hydra.run.dir: {target} already holds a finished run; choose a new folder\n"
    assert (target / "results.json").read_bytes() == before


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_checkpoints(weight_run: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    target = workdir / "run"
    args = ["train", *WEIGHT, f"hydra.run.dir={target}"]
    shutil.copytree(weight_run, target)
    first = json.loads((target / "results.json").read_text())
    # Make it look like the run died during finetune: no finetuned checkpoint, no results.
    (target / "results.json").unlink()
    (target / "checkpoints" / "finetuned.pt").unlink()
    other = refused(*args[:-1], "seed=1", f"hydra.run.dir={target}", cwd=workdir, monkeypatch=monkeypatch,
                    capsys=capsys)
    assert other == (f"progprune: error: hydra.run.dir: {target} holds a run with another config (seed); "
                     "resume it with the same config (progprune resume RUN_DIR) or choose a new folder\n")
    assert "seed: 0" in (target / ".hydra" / "config.yaml").read_text()  # refused before Hydra wrote anything
    again = progprune(*args, cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "train: finished in an earlier attempt (checkpoints/original.pt); skipped" in again.stdout
    assert "prune: finished in an earlier attempt (checkpoints/pruned.pt); skipped" in again.stdout
    second = json.loads((target / "results.json").read_text())
    # Each stage seeds itself, so redoing finetune alone reproduces it exactly.
    for name in ("original", "pruned", "finetuned"):
        assert second["models"][name]["accuracy"] == first["models"][name]["accuracy"]
