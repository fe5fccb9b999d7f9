"""`heads`: whole attention heads go (model=gpt's CausalSelfAttention, nn.MultiheadAttention as in model=vit,
model=hf's GPT2, Llama, Mistral and Qwen2 attention, grouped key/value heads with their query heads): the head's
rows of q, k, v and columns of the output projection, masked while training and cut out of a compacted copy."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.config import StrategyConfig
from progprune_cli.config.schema import choice
from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.pruning.masks import Masks, apply_masks
from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext, Strategy
from progprune_cli.pruning.strategies.calibration import check_batches
from progprune_cli.pruning.strategies.channel_graph import output_gap
from progprune_cli.pruning.strategies.channels import TOLERANCE
from progprune_cli.pruning.strategies.heads_attention import SUPPORTED, HeadLayout, kind_of
from progprune_cli.pruning.strategies.taylor import first_order_terms


@dataclass
class HeadsConfig(StrategyConfig):
    criterion: str = choice("l1", "taylor")
    batches: int = MISSING  # taylor: calibration batches


def attentions(model: nn.Module) -> dict[str, nn.Module]:
    """Every attention module of a kind heads_attention knows, by name, in order of definition."""
    return {name: m for name, m in model.named_modules() if kind_of(m) is not None}


def head_count(attn: nn.Module) -> int:
    return _kind(attn).heads(attn)


def head_entries(model: nn.Module, unit_masks: Masks) -> Masks:
    """Per parameter holding some head's entries, the entries a head's removal keeps (e.g. its rows of q/k/v, weight
    and bias, and its columns of the output projection). Entries of no head (the output's bias) stay."""
    modules = attentions(model)
    masks: Masks = {}
    for unit, keep in unit_masks.items():
        # Owner -1 (no head) picks the appended True.
        kept = torch.cat([keep.to("cpu", torch.bool), torch.ones(1, dtype=torch.bool)])
        for name, owner in _kind(modules[unit]).owners(modules[unit]).items():
            masks[f"{unit}.{name}"] = kept[owner]
    return masks


def remove_heads(model: nn.Module, pruned: dict[str, list[int]]) -> None:
    """Cut the `pruned` heads (attention name → head indices) out of `model` itself: each attention module is cut in
    place or replaced by a smaller one that computes the same with the kept heads (heads_attention)."""
    modules = attentions(model)
    for unit, heads in pruned.items():
        attn = modules[unit]
        kind = _kind(attn)
        keep = torch.ones(kind.heads(attn), dtype=torch.bool)
        keep[heads] = False
        small = kind.cut(attn, keep.repeat_interleave(kind.head_dim(attn)).nonzero().flatten())
        if small is not attn:
            parent, _, name = unit.rpartition(".")
            setattr(model.get_submodule(parent), name, small)


def pruned_heads(unit_masks: Masks) -> dict[str, list[int]]:
    return {unit: (~mask).nonzero().flatten().tolist() for unit, mask in unit_masks.items()}


def _kind(attn: nn.Module) -> type[HeadLayout]:
    kind = kind_of(attn)
    assert kind is not None, type(attn).__name__
    return kind


@STRATEGIES.register("heads", HeadsConfig)
class Heads(Strategy):
    """Units are attention modules, one mask entry per head; scores are `l1` (Σ|w| over the head's q/k/v rows and
    output-projection columns) or `taylor` (Σ_batches |Σ w·∂L/∂w| over those weights and the q/k/v biases)."""

    granularity = "head"

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        if self.cfg.criterion == "taylor":
            check_batches(self.cfg.batches, "strategy.criterion=taylor")
        key = self.cfg.target.key
        if key is not None:
            # Budget searches count channels on torch-pruning's compacted copies; heads have their own compaction.
            raise UserError(f"strategy.target.{key}={getattr(self.cfg.target, key):g}: strategy=heads takes no "
                            "budget yet; set strategy.sparsity (the fraction of heads removed)")

    def units(self, model: nn.Module) -> list[str]:
        return [name for name in attentions(model) if not self._excluded(name)]

    def initial_masks(self, model: nn.Module, info: DataInfo | None = None) -> Masks:
        modules = attentions(model)
        return {unit: torch.ones(head_count(modules[unit]), dtype=torch.bool) for unit in self.units(model)}

    def to_param_masks(self, model: nn.Module, unit_masks: Masks) -> Masks:
        return head_entries(model, unit_masks)

    def check(self, model: nn.Module, info: DataInfo | None = None) -> None:
        """Fail before training on a model without supported attention, or `layers` naming no attention module."""
        name = type(model).__name__
        found = attentions(model)
        if not found:
            other = next(((n, m) for n, m in model.named_modules() if type(m).__name__.endswith("Attention")), None)
            if other is not None:
                raise UserError(f"strategy=heads: {name}'s {type(other[1]).__name__} ({other[0]}) is not an attention "
                                f"it can remove heads from ({SUPPORTED})")
            raise UserError(f"strategy=heads: {name} has no attention layer it can remove heads from ({SUPPORTED})")
        for unit, attn in found.items():
            why = _kind(attn).refusal(attn)
            if why is not None:
                raise UserError(f"strategy=heads: {unit} ({_kind(attn).label}) {why}")
        units = self.units(model)
        if not units:
            raise UserError(f"strategy=heads: every attention layer is in strategy.exclude={list(self.cfg.exclude)}")
        for layer in self.cfg.layers:
            if layer not in units:
                raise UserError(f"strategy.layers.{layer}: no such attention layer; choose from {', '.join(units)}")

    def scores(self, model: nn.Module, masks: Masks, ctx: PruneContext) -> dict[str, torch.Tensor]:
        if self.cfg.criterion == "taylor":
            return self._taylor(model, masks, ctx)
        modules = attentions(model)
        params = dict(model.named_parameters())
        return {unit: _per_head(modules[unit], {name: params[f"{unit}.{name}"].detach().abs()
                                                for name in _kind(modules[unit]).owners(modules[unit])
                                                if name.endswith("weight")})
                for unit in masks}

    def _taylor(self, model: nn.Module, masks: Masks, ctx: PruneContext) -> dict[str, torch.Tensor]:
        modules = attentions(model)
        params = {unit: _head_params(unit, modules[unit]) for unit in masks}
        names = [p for unit in masks for p in params[unit]]
        totals = {unit: torch.zeros(masks[unit].numel(), dtype=torch.float64) for unit in masks}
        for terms in first_order_terms(model, names, ctx, self.cfg.batches):
            for unit in masks:
                local = {p[len(unit) + 1:]: terms[p] for p in params[unit]}
                totals[unit] += _per_head(modules[unit], local).abs()
        return totals

    def compact(self, model: nn.Module, unit_masks: Masks, info: DataInfo | None = None) -> nn.Module:
        """A copy with the removed heads cut out, checked against the masked model (float64, TOLERANCE)."""
        masked = copy.deepcopy(model)
        apply_masks(masked, self.to_param_masks(model, unit_masks))
        small = copy.deepcopy(masked)
        remove_heads(small, pruned_heads(unit_masks))
        if info is not None:  # every stage passes the data's info; token ids need it to make an example input
            gap = output_gap(masked, small, info.example)
            if gap > TOLERANCE:
                raise RuntimeError(f"strategy=heads: compacted, its outputs differ from the masked model's by "
                                   f"{gap:.3g}")
        return small


def _head_params(unit: str, attn: nn.Module) -> list[str]:
    """The parameters a head's entries lie in (e.g. q, k, v weights and biases, the output projection's weight)."""
    return [f"{unit}.{name}" for name in _kind(attn).owners(attn)]


def _per_head(attn: nn.Module, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each head's sum of `terms` (by parameter name inside `attn`) over the entries it owns, in float64 on the CPU."""
    kind = _kind(attn)
    owners = kind.owners(attn)
    total = torch.zeros(kind.heads(attn), dtype=torch.float64)
    for name, term in terms.items():
        owner = owners[name]
        held = owner >= 0
        total.index_add_(0, owner[held], term.detach().double().cpu()[held])
    return total
