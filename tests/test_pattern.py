"""strategy.pattern N:M: exact masks, conv flattening, dense-left layers, the schedule's layer ramp, config errors,
and the 2:4 sparse-kernel row (absent on a CPU, with its reason; its plumbing with a stand-in kernel)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import component, progprune
from progprune_cli.config.checks import check_pattern
from progprune_cli.errors import UserError
from progprune_cli.measure import sparse_kernels
from progprune_cli.pruning.pattern import converted, nm_mask
from progprune_cli.pruning.schedules import build_events
from progprune_cli.pruning.strategies import PruneContext, build_strategy
from progprune_cli.stages import sparse_rows

CTX = PruneContext(loader=[], loss_fn=nn.functional.cross_entropy, device=torch.device("cpu"), seed=0)
CPU_REASON = ("evaluate.sparse_kernels: no sparse-kernel row: torch's 2:4 semi-structured kernels need a CUDA GPU of "
              "compute capability 8.0 or newer and this run evaluates on cpu")


def with_weights(module: nn.Module, values: torch.Tensor) -> nn.Module:
    with torch.no_grad():
        module.weight.copy_(values.reshape(module.weight.shape))
    return module


def step(model: nn.Module, progress: float = 1.0, pattern: str = "2:4", sparsity: float = 0.5):
    strategy = build_strategy(component("strategy", "weight", sparsity=sparsity, pattern=pattern))
    masks = strategy.initial_masks(model)
    return strategy.step(model, masks, sparsity * progress, progress, CTX)


def test_two_four_mask_of_a_linear_with_known_weights() -> None:
    # |w| falls along row 0 and rises along row 1: each group of 4 keeps its 2 largest.
    linear = with_weights(nn.Linear(8, 2), torch.arange(16.0) - 7.5)
    masks, report = step(linear)
    assert masks["weight"].int().tolist() == [[1, 1, 0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0, 1, 1]]
    assert report.layers == {"weight": {"target": 0.5, "achieved": 0.5, "nonzero": 8}}
    assert (report.achieved, report.removed, report.notes) == (0.5, 8, [])


def test_ties_keep_the_earlier_weights_and_pruned_entries_are_never_revived() -> None:
    keep = nm_mask(torch.ones(1, 8), torch.ones(1, 8, dtype=torch.bool), 2, 4)
    assert keep.int().tolist() == [[1, 1, 0, 0, 1, 1, 0, 0]]
    current = torch.tensor([[False, True, True, True]])  # the largest score is already pruned
    assert nm_mask(torch.tensor([[9.0, 1.0, 2.0, 3.0]]), current, 2, 4).int().tolist() == [[0, 0, 1, 1]]


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8), (1, 2)])
def test_exactly_n_kept_in_every_group_of_m(n: int, m: int) -> None:
    scores = torch.rand(16, 4 * m, generator=torch.Generator().manual_seed(0))
    keep = nm_mask(scores, torch.ones_like(scores, dtype=torch.bool), n, m)
    groups = keep.reshape(16, -1, m)
    assert groups.sum(-1).eq(n).all()
    # The kept ones are the group's n largest: every kept score beats every pruned one of its group.
    ranked = scores.reshape(16, -1, m)
    low_kept = torch.where(groups, ranked, torch.inf).min(-1).values
    high_pruned = torch.where(groups, -torch.inf, ranked).max(-1).values
    assert (low_kept > high_pruned).all()


def test_conv_weights_group_along_in_channels_times_kernel() -> None:
    conv = with_weights(nn.Conv2d(2, 1, kernel_size=2), torch.arange(8.0))  # one output, 2 x 2 x 2 = 8 inputs
    masks, _ = step(conv)
    assert masks["weight"].int().tolist() == [[[[0, 0], [1, 1]], [[0, 0], [1, 1]]]]
    # A 1x1 conv's group spans 4 input channels: flattening is in_channels x kh x kw.
    pointwise = with_weights(nn.Conv2d(4, 2, kernel_size=1), torch.tensor([4.0, 1, 3, 2, 1, 4, 2, 3]))
    masks, report = step(pointwise)
    assert masks["weight"].reshape(2, 4).int().tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]]
    assert report.layers["weight"]["achieved"] == 0.5


def test_a_layer_whose_inputs_are_not_a_multiple_of_m_stays_dense_and_is_noted() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, kernel_size=3), nn.Flatten(), nn.Linear(4, 3), nn.Linear(3, 2))
    masks, report = step(model)
    assert masks["0.weight"].all() and masks["3.weight"].all()
    assert masks["2.weight"].sum() == 6
    assert report.notes == ["0.weight: 9 inputs per output is not a multiple of 4; left dense (strategy.pattern 2:4)",
                            "3.weight: 3 inputs per output is not a multiple of 4; left dense (strategy.pattern 2:4)"]
    assert {unit: (layer["target"], layer["achieved"]) for unit, layer in report.layers.items()} == {
        "0.weight": (0.0, 0.0), "2.weight": (0.5, 0.5), "3.weight": (0.0, 0.0)}


def ramp_model() -> nn.Sequential:
    """Eligible units by size: 0 and 1 (128 weights, tied), 2 and 4 (24, tied); 3 has 3 inputs: never."""
    return nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 8), nn.Linear(8, 3), nn.Linear(3, 12), nn.Linear(12, 2))


def test_the_schedule_converts_the_largest_layers_first() -> None:
    model = ramp_model()
    strategy = build_strategy(component("strategy", "weight", pattern="2:4"))
    # A linear schedule over 5 epochs: targets 0, 0.125, ..., 0.5, so progress 0, 1/4, 1/2, 3/4, 1.
    events = build_events(component("schedule", "linear"), units=5, initial=0.0, final=0.5)
    assert [e.target for e in events] == [0.0, 0.125, 0.25, 0.375, 0.5]
    masks, seen, achieved = strategy.initial_masks(model), [], []
    for event in events:
        before = {unit: mask.clone() for unit, mask in masks.items()}
        masks, report = strategy.step(model, masks, event.target, event.target / 0.5, CTX)
        seen.append([unit for unit, layer in report.layers.items() if layer["target"] == 0.5])
        achieved.append(report.achieved)
        for unit in seen[-2] if len(seen) > 1 else []:  # a converted unit keeps exactly its mask
            assert torch.equal(masks[unit], before[unit])
    assert seen == [[], ["0.weight"], ["0.weight", "1.weight"], ["0.weight", "1.weight", "2.weight"],
                    ["0.weight", "1.weight", "2.weight", "4.weight"]]
    # Out of 340 prunable weights (unit 3's 36 always kept): 0, 64, 128, 140 and 152 pruned.
    assert achieved == [1.0 - (340 - pruned) / 340 for pruned in (0, 64, 128, 140, 152)]
    # The nearest whole unit, halves up: of 2 eligible units, progress 0.24 converts none and 0.25 one.
    two = {"a": torch.Size([2, 4]), "b": torch.Size([2, 8]), "c": torch.Size([2, 3])}
    assert (converted(two, 0.24, 4), converted(two, 0.25, 4), converted(two, 1.0, 4)) == ([], ["b"], ["b", "a"])


@pytest.mark.parametrize(("cfg", "message"), [
    (dict(pattern="2-4"), "strategy.pattern: got '2-4'; expected N:M with 1 <= N < M, e.g. 2:4"),
    (dict(pattern="4:4"), "strategy.pattern: got '4:4'; expected N:M with 1 <= N < M, e.g. 2:4"),
    (dict(pattern="2:4", threshold=0.1),
     "strategy.pattern: 2:4 keeps 2 of every 4 weights whatever their size, so it needs sparsity mode; set "
     "strategy.threshold=null"),
    (dict(pattern="1:4"),
     "strategy.pattern: 1:4 leaves converted layers 0.75 sparse, so the schedule ramps to that; set "
     "strategy.sparsity=0.75 (got 0.5)"),
    (dict(pattern="2:4", scope="global"),
     "strategy.pattern: 2:4 chooses inside each group of 4 weights, not by a ranking across layers; set "
     "strategy.scope=layer (got global)"),
    (dict(pattern="2:4", layers={"fc": 0.3}),
     "strategy.pattern: 2:4 makes every converted layer 0.5 sparse; per-layer targets (strategy.layers) do not "
     "apply"),
    (dict(pattern="2:4", include_bias=True),
     "strategy.pattern: 2:4 groups the input weights of each output; a bias has none, so set "
     "strategy.include_bias=false"),
])
def test_a_pattern_the_other_keys_contradict_is_one_line(cfg: dict, message: str) -> None:
    with pytest.raises(UserError) as error:
        check_pattern(component("strategy", "weight", **cfg))
    assert str(error.value) == message
    assert check_pattern(component("strategy", "weight", pattern="1:4", sparsity=0.75)) == (1, 4)


def test_channel_strategies_refuse_a_pattern(workdir: Path) -> None:
    with pytest.raises(UserError) as error:
        build_strategy(component("strategy", "structured", pattern="2:4"))
    assert str(error.value) == ("strategy.pattern: 2:4 groups single weights; strategy=structured prunes whole "
                                "channels here; set strategy.pattern=null")
    result = progprune("train", "+strategy=weight", "strategy.pattern=3:4", cwd=workdir)
    assert (result.returncode, result.stderr) == (2, (
        "progprune: error: strategy.pattern: 3:4 leaves converted layers 0.25 sparse, so the schedule ramps to "
        "that; set strategy.sparsity=0.25 (got 0.5)\n"))
    assert not (workdir / "runs").exists()


def test_semi_structured_kernels_are_unavailable_on_a_cpu_and_say_why() -> None:
    assert sparse_kernels.semi_structured_unavailable(torch.device("cpu")) == CPU_REASON.split(": ", 2)[2]
    assert sparse_kernels.is_two_four(torch.tensor([[1.0, 0, 2, 0, 0, 0, 0, 3]]))
    assert not sparse_kernels.is_two_four(torch.tensor([[1.0, 1, 2, 0]]))
    assert not sparse_kernels.is_two_four(torch.ones(2, 6))  # 6 inputs: no groups of 4


@pytest.mark.slow
def test_a_two_four_run_on_a_cpu_has_no_sparse_kernel_row_and_says_why(workdir: Path) -> None:
    result = progprune("train", "+strategy=weight", "strategy.pattern=2:4", "evaluate.sparse_kernels=true",
                       "dataset=synthetic", "train.epochs=1", "prune.epochs=2", "finetune.epochs=1",
                       "evaluate.repeats=2", "evaluate.warmup=1", "evaluate.dense_baseline=false", cwd=workdir)
    assert result.returncode == 0, result.stderr
    (run,) = [p for p in (workdir / "runs").glob("*/*") if (p / "results.json").is_file()]
    results = json.loads((run / "results.json").read_text())
    assert list(results["models"]) == ["original", "pruned", "finetuned"]
    assert results["notes"] == [CPU_REASON]
    assert f"- {CPU_REASON}" in (run / "results.md").read_text()
    pruning = results["pruning"]
    assert pruning["notes"] == ["conv1.weight: 9 inputs per output is not a multiple of 4; left dense "
                                "(strategy.pattern 2:4)"]
    # run.log says it once, at the step that first found it
    assert (run / "run.log").read_text().count(f"  note: {pruning['notes'][0]}\n") == 1
    last = pruning["steps"][-1]["layers"]
    assert {unit: layer["achieved"] for unit, layer in last.items()} == {
        "conv1.weight": 0.0, "conv2.weight": 0.5, "fc.weight": 0.5}


def test_the_two_four_row_plumbing_with_a_stand_in_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the CUDA kernel (this machine has none): the dense weight stands in for the compressed one, so what is
    checked is which layers convert, the float16 copy, the check against dense and the note."""
    monkeypatch.setattr(sparse_kernels, "semi_structured_unavailable", lambda device: None)
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", lambda weight: weight)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))
    for layer in (model[1], model[3], model[5]):
        with torch.no_grad():
            layer.weight.mul_(nm_mask(layer.weight.abs(), torch.ones_like(layer.weight, dtype=torch.bool), 2, 4))
    logged: list[str] = []
    parts = SimpleNamespace(device=torch.device("cpu"), cfg=SimpleNamespace(
        strategy=component("strategy", "weight", pattern="2:4"),
        evaluate=SimpleNamespace(batch_size=16, warmup=0, repeats=1, threads=1, min_repeats=1, target_spread=None)))
    sparse, note = sparse_rows.sparse_kernel_model(parts, SimpleNamespace(log=logged.append), model,
                                                   torch.randn(20, 1, 8, 8))
    # 16 x 3 is below the 16 x 16 block cuSPARSELt takes in float16: that layer stays dense.
    assert [name for name, m in sparse.named_modules() if isinstance(m, sparse_kernels.SemiStructuredLinear)] == [
        "module.1", "module.3"]
    assert note is not None and note.startswith(
        "evaluate.sparse_kernels: 2:4 semi-structured kernels (torch.sparse) for 1, 3; the row runs the whole model "
        "in float16 (max |diff| vs dense float16 ")
    assert note.endswith("×") and logged == [note]
    assert sparse(torch.randn(2, 1, 8, 8)).dtype == torch.float32
    assert model[1].weight.dtype == torch.float32  # the finetuned model itself is untouched
