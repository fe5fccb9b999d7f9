"""`progprune sensitivity`: per-unit analysis on a hand-built model, the greedy budget, layers_from, the command."""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import TensorDataset

from conftest import component, progprune, refused
from progprune_cli.config import load_run_config
from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.optim.losses import build_loss
from progprune_cli.pruning.strategies import PruneContext, build_strategy
from progprune_cli.sensitivity.analysis import Evaluation, analyse, ranking
from progprune_cli.sensitivity.budget import Curve, derive, layers_yaml
from progprune_cli.sensitivity.table import COLUMNS

TINY = ["+strategy=weight", "dataset=synthetic", "model=mlp", "train.epochs=1"]


# --- the analysis on a model whose weights are set by hand ---------------------------------------------------------

class SignalAndEcho(nn.Module):
    """logits = signal(x) + echo(x): `signal` decides every sample; `echo` is a 1% copy of it (redundant)."""

    def __init__(self) -> None:
        super().__init__()
        self.signal = nn.Linear(4, 2, bias=False)
        self.echo = nn.Linear(4, 2, bias=False)
        row = torch.tensor([1.0, 1.01, 1.02, 1.03])  # distinct magnitudes: magnitude pruning drops x0, x1 first
        with torch.no_grad():
            self.signal.weight.copy_(torch.stack([row, -row]))
            self.echo.weight.copy_(0.01 * torch.stack([row, -row]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.signal(x) + self.echo(x)


def signal_data() -> TensorDataset:
    """Class 0 when x0+x1+x2+x3 > 0. Half the samples point the other way in x2+x3 than in the sum, half in x0+x1,
    so any signal missing x0 and x1 (or all but x3) is right on exactly half."""
    base = torch.tensor([[2.0, 2.0, -1.0, -1.0], [-1.0, -1.0, 2.0, 2.0]])
    x = torch.cat([base, -base]).repeat(4, 1)
    y = (x.sum(1) < 0).long()
    return TensorDataset(x.view(-1, 1, 2, 2), y)


def test_the_layer_carrying_the_signal_is_most_sensitive_and_pruned_least() -> None:
    model = SignalAndEcho()
    strategy = build_strategy(component("strategy", "weight"))
    loss = build_loss("cross_entropy", 0.0)
    measure = Evaluation(signal_data(), loss, torch.device("cpu"))
    ctx = PruneContext([], loss, torch.device("cpu"), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = analyse(model, strategy, (0.5, 0.9), measure, ctx, DataInfo(1, 2, 2, 2))
    assert result.dense_accuracy == 1.0
    assert result.sizes == {"signal.weight": 8, "echo.weight": 8}
    got = [(p.unit, p.level, p.val_accuracy, p.params_removed, p.macs_removed) for p in result.points]
    # 0.5 removes 4 of 8 weights (x0, x1 of both rows); 0.9 removes 7 (only -1.03·x3 is left).
    assert got == [("signal.weight", 0.5, 0.5, 4, 4), ("signal.weight", 0.9, 0.5, 7, 7),
                   ("echo.weight", 0.5, 1.0, 4, 4), ("echo.weight", 0.9, 1.0, 7, 7)]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # every unit was put back
    assert ranking(result) == ["signal.weight", "echo.weight"]
    curves = [Curve(u, result.sizes[u], tuple(p.level for p in result.curve(u)),
                    tuple(p.val_accuracy for p in result.curve(u)), tuple(p.params_removed for p in result.curve(u)))
              for u in result.sizes]
    budget = derive(curves, result.dense_accuracy, target=0.5)
    # The echo goes to 0.9 for free; the last 0.8 of 8 entries come from the signal at 0.125 accuracy per weight.
    assert budget.sparsities == {"signal.weight": 0.1, "echo.weight": 0.9}
    assert budget.sparsity == pytest.approx(0.5, abs=1e-12)
    assert budget.predicted_drop == pytest.approx(0.1, abs=1e-12)


# --- the greedy budget on curves made by hand ------------------------------------------------------------------------

CURVES = [
    Curve("a", 100, (0.25, 0.5, 0.75), (0.9, 0.8, 0.5), (25, 50, 75)),
    Curve("b", 100, (0.25, 0.5, 0.75), (0.89, 0.88, 0.87), (25, 50, 75)),
    Curve("c", 200, (0.25, 0.5, 0.75), (0.9, 0.9, 0.6), (50, 100, 150)),
]


def test_greedy_budget_raises_the_cheapest_level_first_and_lands_on_the_target() -> None:
    # a→0.25 and c→0.25, c→0.5 are free (a first: ties go to the earlier unit); then b at 0.0004 per parameter
    # beats a's 0.004 and c's 0.006 three times, and its last raise is cut to 5 of 25 entries: b = 0.55.
    budget = derive(CURVES, dense_accuracy=0.9, target=0.45)
    assert budget.sparsities == {"a": 0.25, "b": 0.55, "c": 0.5}
    assert budget.sparsity == pytest.approx(0.45, abs=1e-12)
    assert budget.predicted_drop == pytest.approx(0.022, abs=1e-12)


def test_greedy_budget_ends() -> None:
    assert derive(CURVES, 0.9, target=0.0).sparsities == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert derive(CURVES, 0.9, target=0.75).sparsities == {"a": 0.75, "b": 0.75, "c": 0.75}
    exact = derive(CURVES, 0.9, target=0.5)  # b's third raise lands exactly on 200 of 400 entries
    assert exact.sparsities == {"a": 0.25, "b": 0.75, "c": 0.5} and exact.sparsity == 0.5


def test_layers_yaml_is_the_comment_then_the_mapping() -> None:
    text = layers_yaml(derive(CURVES, 0.9, target=0.45), ["how it was derived", "use it like this"])
    assert text == "# how it was derived\n# use it like this\na: 0.25\nb: 0.55\nc: 0.5\n"
    assert yaml.safe_load(text) == {"a": 0.25, "b": 0.55, "c": 0.5}


# --- strategy.layers_from --------------------------------------------------------------------------------------------

def composed(*overrides: str) -> dict:
    with initialize_config_module(config_module="progprune_cli.conf", version_base="1.3"):
        data = OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)), resolve=True)
    assert isinstance(data, dict)
    return data


def test_layers_from_fills_layers_and_explicit_entries_win(tmp_path: Path) -> None:
    path = tmp_path / "layers.yaml"
    path.write_text("# a comment\nfc1.weight: 0.25\nfc2.weight: 0.5\nfc3: 0.75\n")
    cfg = load_run_config(composed("+strategy=weight", f"+strategy.layers_from={path}", "+strategy.layers.fc2=0.1"))
    assert cfg.strategy is not None and cfg.strategy.layers_from == str(path)
    # `fc2` given explicitly replaces the file's fc2.weight; the explicit entry comes first.
    assert list(cfg.strategy.layers.items()) == [("fc2", 0.1), ("fc1.weight", 0.25), ("fc3", 0.75)]


@pytest.mark.parametrize("text, error", [
    ("fc1.weight: 1.0\n", "fc1.weight: got 1.0; must be a sparsity in [0, 1)"),
    ("fc1.weight: yes\n", "fc1.weight: got True; must be a sparsity in [0, 1)"),
    ("- 0.5\n", "expected a mapping of unit: sparsity, found list"),
    ("fc1: [0.5\n", "not valid YAML (did not find expected ',' or ']' at line 2)"),
])
def test_layers_from_bad_files(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "layers.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as raised:
        load_run_config(composed("+strategy=weight", f"+strategy.layers_from={path}"))
    assert str(raised.value) == f"strategy.layers_from: {path}: {error}"


# --- the installed command -------------------------------------------------------------------------------------------

def one_run(workdir: Path, kind: str) -> Path:
    (run,) = [p for p in (workdir / "runs").glob(f"[!.]*/*_{kind}_*") if p.is_dir()]
    return run


def test_sensitivity_then_train_with_its_budget(workdir: Path) -> None:
    result = progprune("sensitivity", *TINY, "sensitivity.levels=[0.5,0.9]", "sensitivity.target=0.3", cwd=workdir)
    assert result.returncode == 0, result.stderr
    run = one_run(workdir, "sensitivity")
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    for name in (".hydra/config.yaml", "run.log", "config.json", "sensitivity.png"):
        assert (run / name).is_file(), name
    assert (run / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (run / "sensitivity.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS == ("unit", "level", "val_accuracy", "val_loss", "params_removed",
                                         "macs_removed")
    # The mlp's three weight tensors (128·64, 64·128, 4·64) × two levels.
    assert [(r["unit"], r["level"], r["params_removed"]) for r in rows] == [
        ("1.weight", "0.5", "4096"), ("1.weight", "0.9", "7373"), ("3.weight", "0.5", "4096"),
        ("3.weight", "0.9", "7373"), ("5.weight", "0.5", "128"), ("5.weight", "0.9", "230")]
    text = (run / "layers.yaml").read_text()
    assert text.startswith("# Sparsities per weight tensor for strategy=weight, from progprune sensitivity.\n")
    budget = yaml.safe_load(text)
    assert list(budget) == ["1.weight", "3.weight", "5.weight"]
    sizes = {"1.weight": 8192, "3.weight": 8192, "5.weight": 256}
    assert sum(budget[u] * n for u, n in sizes.items()) / sum(sizes.values()) == pytest.approx(0.3, abs=1e-6)
    assert len(set(budget.values())) > 1  # not uniform, so the train run below shows the file was read
    assert "train: 1 epochs of the dense mlp" in (run / "run.log").read_text()
    # The suggested command: the analysis's own overrides, the budget's sparsity and the file.
    (use,) = [line for line in text.splitlines() if line.startswith("# Use: ")]
    layers = run.relative_to(workdir) / "layers.yaml"
    assert use == f"# Use: progprune train {' '.join(TINY)} strategy.sparsity=0.3 +strategy.layers_from={layers}"

    result = progprune(*shlex.split(use[len("# Use: progprune "):]), "prune.epochs=1", "finetune.epochs=1",
                       "evaluate.repeats=2", "evaluate.warmup=1", "evaluate.dense_baseline=false", cwd=workdir)
    assert result.returncode == 0, result.stderr
    log = (one_run(workdir, "weight") / "run.log").read_text()
    assert f"train: reused the dense model from {workdir / 'runs' / '.cache'}" in log
    for unit, sparsity in budget.items():
        assert f"  {unit}: target {sparsity:.2%}, achieved " in log

    shown = progprune("report", str(run), cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"progprune sensitivity {run.name}"
    assert lines[1] == text.splitlines()[0][2:]
    table = [line for line in lines if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in table] == sorted(
        budget, key=lambda u: sum(float(r["val_accuracy"]) for r in rows if r["unit"] == u))
    assert f"{budget['1.weight']:.2%}" in table[[line.split("│")[1].strip() for line in table].index("1.weight")]

    md = progprune("report", "--md", str(run), cwd=workdir)
    assert md.returncode == 0, md.stderr
    lines = md.stdout.splitlines()
    assert lines[:2] == [f"# progprune sensitivity {run.name}", ""]
    assert lines[2] == text.splitlines()[0][2:] + "  "
    grid = [line for line in lines if line.startswith("| ") and not line.startswith("| unit")]
    assert [line.split(" | ")[0][2:] for line in grid] == [line.split("│")[1].strip() for line in table]
    assert grid[0].endswith(f" | {budget[grid[0].split(' | ')[0][2:]]:.2%} |")


def test_a_sweep_shares_one_dense_model(workdir: Path) -> None:
    result = progprune("sensitivity", "-m", "+strategy=weight,random", "dataset=synthetic", "model=mlp",
                       "train.epochs=1", "sensitivity.levels=[0.5]", cwd=workdir)
    assert result.returncode == 0, result.stderr
    (sweep,) = (workdir / "runs").glob("[!.]*/*_sensitivity_sweep_*")
    first, second = (sweep / "0" / "run.log").read_text(), (sweep / "1" / "run.log").read_text()
    assert "train: 1 epochs of the dense mlp" in first and "train: reused the dense model" in second
    assert all(len((sweep / job / "sensitivity.csv").read_text().splitlines()) == 1 + 3 for job in ("0", "1"))


@pytest.mark.parametrize("args, error", [
    (["dataset=synthetic"], "strategy: progprune sensitivity needs one to score and prune units; add +strategy=NAME "
                            "(one of activation, heads, random, sparsegpt, structured, taylor, wanda, weight)"),
    (["+strategy=weight", "sensitivity.levels=[0.5,1.0]"],
     "sensitivity.levels: got 1.0; every level must be in (0, 1)"),
    (["+strategy=weight", "+strategy.layers_from=missing.yaml"],
     "strategy.layers_from: missing.yaml: cannot read it (No such file or directory)"),
])
def test_bad_input_is_one_line_before_any_folder(workdir: Path, args: list[str], error: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    err = refused("sensitivity", *args, cwd=workdir, monkeypatch=monkeypatch, capsys=capsys)
    assert err == f"progprune: error: {error}\n"
    assert not (workdir / "runs").exists()
