"""Channel-level strategies: whole output channels of conv/linear layers go, and the result can be compacted."""

from __future__ import annotations

import copy
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.pruning.strategies import channel_graph as cg
from progprune_cli.pruning.strategies.base import PruneContext, StepReport, Strategy
from progprune_cli.config import StrategyConfig
from progprune_cli.errors import UserError, described
from progprune_cli.pruning.masks import Masks, apply_masks

TOLERANCE = 1e-5  # max |compacted(x) − masked(x)| allowed (float64, so only a structural error exceeds it)


@dataclass
class ChannelConfig(StrategyConfig):
    keep_first: bool = MISSING  # the first conv/linear sees raw pixels and is cheap: keep it at full width


class ChannelStrategy(Strategy):
    """Units are coupled groups of output channels, keyed by their first layer; masks are (out_channels,) bools.

    Layers whose channels are tied by a residual add form one unit (scored by the mean over its layers), so a
    channel is always removed from every layer that shares it. The classifier's outputs are the classes: never a unit.
    Where grouped convolutions split a unit's channels into blocks, its mask covers one block and the same positions
    go from every block. A unit whose channels cannot be removed exactly (`dense`) stays at full width, named in
    every step's notes. On a transformer (a model with attention) the units are its MLPs' hidden layers only: their
    neurons go, while the residual stream, attention, embeddings, norms and heads stay whole.
    """

    granularity = "channel"

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        # One sample's shape from DataInfo once a caller gives it; for token ids, DataInfo.example (no shape says them).
        self.shape: cg.Inputs | None = None
        self._traced: tuple[nn.Module, cg.Inputs, cg.ChannelGraph] | None = None
        self._dense: tuple[Any, dict[str, str]] | None = None  # (traced structure, unit → why it stays dense)

    @abstractmethod
    def layer_scores(self, model: nn.Module, layers: list[str], ctx: PruneContext) -> dict[str, torch.Tensor]:
        """Importance of each output channel of each named layer (higher = keep)."""

    def graph(self, model: nn.Module) -> cg.ChannelGraph:
        """The model's channel coupling, traced once per model instance."""
        shape = self._shape_of(model)
        if self._traced is None or self._traced[0] is not model or self._traced[1] != shape:
            self._traced = (model, shape, cg.trace(model, shape))
        return self._traced[2]

    def units(self, model: nn.Module) -> list[str]:
        dense = self.dense(model)
        return [unit for unit in self._candidates(model) if unit not in dense]

    def dense(self, model: nn.Module) -> dict[str, str]:
        """Units whose channels cannot be removed exactly in this model, and why: they stay at full width.

        Found once per traced structure (a trained copy of the same model reuses the verdict): what torch-pruning is
        known to get wrong (channels normalized together, attention heads, grouped convolutions), then a trial with
        one channel less in every other unit; the units that fail it alone are found by halving the set.
        """
        graph = self.graph(model)
        key = (self._shape_of(model), tuple(graph.groups.items()), tuple(graph.widths.items()))
        if self._dense is None or self._dense[0] != key:
            self._dense = (key, self._find_dense(model, graph))
        return self._dense[1]

    def dense_notes(self, model: nn.Module) -> list[str]:
        """One line per unit left at full width, naming it, how many layers share its channels, and why."""
        groups = self.graph(model).groups
        return [f"{unit}{_coupled(len(groups[unit]) - 1)}: left dense: {why}"
                for unit, why in self.dense(model).items()]

    def _candidates(self, model: nn.Module) -> list[str]:
        """Roots that are not the classifier, the kept first layer or excluded (before any is found dense); on a
        transformer, only its MLPs' hidden layers."""
        graph = self.graph(model)
        first = {graph.first} if self.cfg.keep_first and graph.first is not None else set()
        return [root for root, members in graph.groups.items()
                if root not in graph.outputs and not any(self._excluded(m) or m in first for m in members)
                and (not graph.attention or root in graph.hidden)]

    def _find_dense(self, model: nn.Module, graph: cg.ChannelGraph) -> dict[str, str]:
        candidates = self._candidates(model)
        dense = {unit: graph.blocked[unit] for unit in candidates if unit in graph.blocked}
        rest = [unit for unit in candidates if unit not in dense and graph.widths[unit] > 1]
        while rest:
            _, problem = self._try_compact(model, _trial(graph, rest))
            if problem is None:
                break
            failing = self._failing(model, graph, rest, problem)
            if not failing:  # every part compacts alone, only not all of them together
                raise UserError(f"strategy={self.cfg.name}: cannot compact layers {', '.join(rest)} together: "
                                f"{problem}")
            dense.update(failing)
            rest = [unit for unit in rest if unit not in failing]
        return {unit: dense[unit] for unit in candidates if unit in dense}

    def _failing(self, model: nn.Module, graph: cg.ChannelGraph, units: list[str], problem: str) -> dict[str, str]:
        """The units (of a set that fails the trial with `problem`) that fail it on their own, and why."""
        if len(units) == 1:
            return {units[0]: problem}
        found: dict[str, str] = {}
        for part in (units[:len(units) // 2], units[len(units) // 2:]):
            _, why = self._try_compact(model, _trial(graph, part))
            if why is not None:
                found.update(self._failing(model, graph, part, why))
        return found

    def initial_masks(self, model: nn.Module, info: DataInfo | None = None) -> Masks:
        self._remember(info)
        widths = self.graph(model).widths
        return {unit: torch.ones(widths[unit], dtype=torch.bool) for unit in self.units(model)}

    def scores(self, model: nn.Module, masks: Masks, ctx: PruneContext) -> dict[str, torch.Tensor]:
        graph = self.graph(model)
        groups = graph.groups
        per_layer = self.layer_scores(model, [m for unit in masks for m in groups[unit]], ctx)
        # Where grouped convolutions split a unit into blocks, a position scores its mean over the blocks.
        return {unit: torch.stack([per_layer[m].detach().float().cpu().view(graph.folds.get(unit, 1), -1)
                                   for m in groups[unit]]).mean((0, 1))
                for unit in masks}

    def to_param_masks(self, model: nn.Module, unit_masks: Masks) -> Masks:
        """Every parameter entry torch-pruning would remove with these channels: the layer's rows and bias, the next
        layers' inputs, batch-norm scale and shift (so a removed channel reads 0, not beta − mean·gamma/std) and
        residual partners. Zeroing exactly these makes the masked model compute what the compacted one does."""
        return cg.kept_entries(model, self._shape_of(model), _pruned(unit_masks))

    def compact(self, model: nn.Module, unit_masks: Masks, info: DataInfo | None = None) -> nn.Module:
        """A copy with the pruned channels physically removed, checked against the masked model."""
        self._remember(info)
        small, problem = self._try_compact(model, unit_masks)
        if small is None or problem is not None:
            layer, why = self._blame(model, unit_masks, problem)
            raise RuntimeError(f"strategy={self.cfg.name}: cannot compact layer {layer}: {why}")
        return small

    def step(self, model: nn.Module, masks: Masks, target: float, progress: float,
             ctx: PruneContext) -> tuple[Masks, StepReport]:
        new, report = super().step(model, masks, target, progress, ctx)
        report.notes = [*self.dense_notes(model), *report.notes]
        return new, report

    def check(self, model: nn.Module, info: DataInfo | None = None) -> None:
        """Fail before training when the model cannot be traced or leaves nothing to prune; units that cannot be
        compacted (one trial channel less) are left dense and named in every step's notes."""
        self._remember(info)
        name = self.cfg.name
        if info is not None and info.vocab and not cg.has_attention(model):
            # Only a transformer's MLP neurons are known to go exactly from a model fed token ids.
            raise UserError(f"strategy={name}: removing channels of a language model is supported on transformers' "
                            f"MLP hidden layers only (model=gpt or hf); prune its weights (+strategy=weight, wanda or "
                            f"sparsegpt, or strategy.granularity=weight)")
        try:
            graph = self.graph(model)
        except Exception as error:  # noqa: BLE001 - whatever torch-pruning raises, the user needs one line
            raise UserError(f"strategy={name}: cannot compact {type(model).__name__}: torch-pruning could not "
                            f"trace it: {described(error)}") from None
        units, dense = self.units(model), self.dense(model)
        if not units and dense:
            layer, why = next(iter(dense.items()))
            others = f" (and {len(dense) - 1} more layers)" if len(dense) > 1 else ""
            raise UserError(f"strategy={name}: cannot compact layer {layer}{others}: {why}")
        if not units and graph.attention:
            raise UserError(
                f"strategy={name}: no MLP hidden layer left to prune in {type(model).__name__}: on a transformer only "
                f"the hidden neurons of MLPs (a linear layer, elementwise ops, a linear layer; or gated) are pruned; "
                f"strategy.exclude={list(self.cfg.exclude)}")
        if not units:
            raise UserError(
                f"strategy={name}: no layer left to prune: the classifier ({', '.join(sorted(graph.outputs))}) "
                f"is never pruned, strategy.keep_first={self.cfg.keep_first} and strategy.exclude="
                f"{list(self.cfg.exclude)}; set strategy.keep_first=false or exclude fewer layers")
        self._check_layers(graph, units, dense)

    def _check_layers(self, graph: cg.ChannelGraph, units: list[str], dense: dict[str, str]) -> None:
        coupled = {m: unit for unit in [*units, *dense] for m in graph.groups[unit]}
        for layer in self.cfg.layers:
            if layer in units:
                continue
            if coupled.get(layer) in dense:
                raise UserError(f"strategy.layers.{layer}: cannot be pruned here ({dense[coupled[layer]]}); remove "
                                "it from strategy.layers")
            if layer in coupled:
                raise UserError(f"strategy.layers.{layer}: its channels are tied to {coupled[layer]} (residual "
                                f"add); set strategy.layers.{coupled[layer]} instead")
            if graph.attention:
                raise UserError(f"strategy.layers.{layer}: not an MLP hidden layer, the only layers pruned in a "
                                f"transformer; choose from {', '.join(units)}")
            raise UserError(f"strategy.layers.{layer}: no such prunable layer; choose from {', '.join(units)}")

    def _try_compact(self, model: nn.Module, unit_masks: Masks) -> tuple[nn.Module | None, str | None]:
        """The masked copy of `model` compacted, and why it computes something else (None: it does not)."""
        shape = self._shape_of(model)
        try:
            masked = copy.deepcopy(model)
            apply_masks(masked, self.to_param_masks(model, unit_masks))
            small = cg.remove_channels(masked, shape, _pruned(unit_masks))
            gap = cg.output_gap(masked, small, shape)
        except Exception as error:  # noqa: BLE001 - reported with the layer that caused it
            return None, f"compacting fails: {described(error)}"
        differ = f"compacted, its outputs differ from the masked model's by {gap:.3g}"
        return small, None if gap <= TOLERANCE else differ

    def _blame(self, model: nn.Module, unit_masks: Masks, problem: str | None) -> tuple[str, str | None]:
        """The first unit that fails to compact on its own, and why (compaction failed with all of them)."""
        for unit in unit_masks:
            _, why = self._try_compact(model, _only(unit_masks, unit))
            if why is not None:
                return unit, why
        return ", ".join(unit_masks) + " together", problem

    def _remember(self, info: DataInfo | None) -> None:
        if info is not None:
            self.shape = inputs_of(info)

    def _shape_of(self, model: nn.Module) -> cg.Inputs:
        if self.shape is None:
            # Callers that do not pass DataInfo: probe the model for an input it accepts (structure, not size, matters).
            try:
                self.shape = cg.guess_shape(model)
            except ValueError as error:
                raise UserError(f"strategy={self.cfg.name}: cannot find an input shape for "
                                f"{type(model).__name__}: {error}") from None
        return self.shape


def inputs_of(info: DataInfo) -> cg.Inputs:
    """What the dependency graph and the output check run on: the data's shape, or for token ids (which no shape
    says) the data's own examples."""
    return info.example if info.vocab else info.shape


def _pruned(unit_masks: Masks) -> dict[str, list[int]]:
    return {unit: (~mask).nonzero().flatten().tolist() for unit, mask in unit_masks.items()}


def _trial(graph: cg.ChannelGraph, units: list[str]) -> Masks:
    """One channel less in each of `units`: enough to show whether torch-pruning removes their channels exactly."""
    return {unit: torch.arange(graph.widths[unit]) > 0 for unit in units}


def _coupled(count: int) -> str:
    return "" if count == 0 else f" and the {count} layer{'s' if count > 1 else ''} coupled to it"


def _only(unit_masks: Masks, unit: str) -> Masks:
    """The masks with every unit but `unit` back at full width (to find which one breaks compaction)."""
    return {u: m if u == unit else torch.ones_like(m) for u, m in unit_masks.items()}


