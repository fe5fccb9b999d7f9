"""What Wanda and SparseGPT read from calibration data: each layer's inputs as rows over its weight's columns.

A unit's weight is viewed as `(out, K)` rows (pruning/layout.py: `(out, *inputs)` flattened, or the transpose of
transformers' Conv1D `(in, out)`); its inputs are read with forward pre-hooks on the layer as an `(n, K)` matrix
whose column j multiplies column j of the rows: a Linear's or Conv1D's last dim (every position of a (batch, block,
features) input counts as one row), a Conv2d's unfolded patches (column j is (in_channel, kh, kw), in the weight's
memory order). Only Linear, Conv1D and Conv2d (groups=1) weights have such columns:
an embedding, a bare `in_proj_weight`, a recurrent weight or a bias is refused in one line naming the unit and
`strategy.exclude`. Not a magnitude fallback: that would mix two criteria in one run and report the mixture as
Wanda or SparseGPT; both papers prune only the linear layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.config import StrategyConfig
from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.pruning.layout import is_transposed
from progprune_cli.pruning.masks import Masks
from progprune_cli.pruning.select import Selection
from progprune_cli.pruning.strategies.base import PruneContext, StepReport, Strategy
from progprune_cli.pruning.strategies.calibration import batches, check_batches


@dataclass
class CalibratedConfig(StrategyConfig):
    batches: int = MISSING  # calibration batches of the training split (un-augmented, seeded shuffle), as activation's


class _Enough(Exception):
    """Raised by a hook once the layer it waits for has seen its input: the rest of the forward is not needed."""


def layer_of(model: nn.Module, unit: str) -> nn.Module:
    return model.get_submodule(unit.rsplit(".", 1)[0])


def columns(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input `x` as an `(n, K)` matrix: row i times weight row r is output r at position i."""
    if isinstance(layer, nn.Conv2d):
        # Padded as the conv pads (any padding_mode, 'same' included), then unfolded without padding.
        mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        padded = nn.functional.pad(x, layer._reversed_padding_repeated_twice, mode=mode)
        patches = nn.functional.unfold(padded, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return x.reshape(-1, x.shape[-1])


def observe(model: nn.Module, units: list[str], ctx: PruneContext, count: int,
            record: Callable[[str, torch.Tensor], None], *, stop_after: bool = False) -> None:
    """`record(unit, columns)` for every input each unit's layer sees on `count` calibration batches, in eval mode
    without gradients; `stop_after`: one unit, and each batch's forward ends at its layer."""
    inputs = (x for x, _ in batches(ctx, count))
    _forward(model, units, inputs, lambda unit, layer, x: record(unit, columns(layer, x)), stop_after)


def _forward(model: nn.Module, units: list[str], inputs: Iterable[torch.Tensor],
             on_input: Callable[[str, nn.Module, torch.Tensor], None], stop_after: bool = False) -> None:
    """`model` run on `inputs` with `on_input` hooked before each unit's layer; a unit whose layer never ran (its
    weight used by another module's forward, as nn.MultiheadAttention uses out_proj's) is refused: it has no
    inputs to weigh."""
    seen: set[str] = set()

    def hook(unit: str, layer: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.add(unit)
        on_input(unit, layer, args[0].detach())
        if stop_after:
            raise _Enough

    hooks = [layer_of(model, u).register_forward_pre_hook(lambda m, a, u=u: hook(u, m, a)) for u in units]
    training = model.training
    model.eval()  # calibration must not move batch-norm statistics
    try:
        with torch.no_grad():
            for x in inputs:
                try:
                    model(x)
                except _Enough:
                    pass
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    for unit in units:
        if unit not in seen:
            raise UserError(f"strategy.exclude: {unit} is used by no forward call of its own layer, so it has no "
                            "inputs to weigh; add it to strategy.exclude")


class Calibrated(Strategy):
    """Wanda's and SparseGPT's common ground: Linear/Conv1D/Conv2d weights only, a sparsity per layer, calibration
    batches."""

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        name = self.cfg.name
        check_batches(self.cfg.batches, name)
        if self.cfg.threshold is not None:
            raise UserError(f"strategy.threshold: {name} prunes each layer to a sparsity; set strategy.threshold=null")
        if self.cfg.scope != "layer":
            raise UserError(f"strategy.scope: {name} prunes each layer to strategy.sparsity (its comparison group is "
                            f"within a layer); got {self.cfg.scope}, use scope layer")
        if self.cfg.include_bias:
            raise UserError(f"strategy.include_bias: {name} weighs weights by their inputs, and a bias has none; set "
                            "strategy.include_bias=false")

    def units(self, model: nn.Module) -> list[str]:
        """The weights of Linear (transformers' Conv1D too) and Conv2d layers among the common units: the layers both
        papers prune. Others (an embedding table, an LSTM's matrices) have no input columns to weigh and stay dense,
        said in the notes."""
        return [u for u in super().units(model) if _weighable(model, u)]

    def dense_notes(self, model: nn.Module) -> list[str]:
        left = [u for u in super().units(model) if not _weighable(model, u)]
        return [f"left dense: {', '.join(left)} (not the weight of a Linear, Conv1D or Conv2d layer: {self.cfg.name} "
                "weighs a weight by its input column)"] if left else []

    def check(self, model: nn.Module, info: DataInfo | None = None) -> None:
        super().check(model, info)
        for unit in self.units(model):
            layer = layer_of(model, unit)
            if isinstance(layer, nn.Conv2d) and layer.groups != 1:
                raise UserError(f"strategy={self.cfg.name}: {unit} is a grouped convolution (groups={layer.groups}), "
                                "which is not supported; add it to strategy.exclude")
        if info is not None:  # before training: a layer whose forward never runs would fail only when pruning
            _forward(model, self.units(model), [info.example(2)], lambda unit, layer, x: None)

    def unit_targets(self, masks: Masks, target: float, progress: float) -> dict[str, float]:
        """Each unit's sparsity at this step: the step's target, or its strategy.layers entry scaled by progress."""
        layers = {k: v * progress for k, v in self.cfg.layers.items()}
        how = Selection(sparsity=target, layers=layers)
        return {unit: _target_of(unit, how, target) for unit in masks}


def _weighable(model: nn.Module, unit: str) -> bool:
    owner, _, kind = unit.rpartition(".")
    parent = layer_of(model, owner) if "." in owner else model
    # An attention's out_proj is a Linear its attention reads without calling it: no forward hook sees its inputs.
    layer = layer_of(model, unit)
    return ((isinstance(layer, (nn.Linear, nn.Conv2d)) or is_transposed(layer)) and kind == "weight"
            and not isinstance(parent, nn.MultiheadAttention))


def _target_of(unit: str, how: Selection, target: float) -> float:
    module = unit.rsplit(".", 1)[0]
    return next((how.layers[n] for n in (unit, module) if n in how.layers), target)


def step_report(before: Masks, after: Masks, targets: dict[str, float], target: float,
                notes: list[str]) -> StepReport:
    """The StepReport of masks going from `before` to `after`, with each unit's target."""
    kept = sum(int(m.sum()) for m in after.values())
    total = sum(m.numel() for m in after.values())
    layers = {unit: {"target": targets[unit], "achieved": 1.0 - int(m.sum()) / m.numel(), "nonzero": int(m.sum())}
              for unit, m in after.items()}
    return StepReport(target=target, achieved=1.0 - kept / total,
                      removed=sum(int(m.sum()) for m in before.values()) - kept, layers=layers, notes=notes)
