"""`heads`: whole attention heads go (model=gpt's CausalSelfAttention): the head's rows of q, k, v and columns of
proj, masked while training and cut out of a compacted copy."""

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
from progprune_cli.models.gpt import CausalSelfAttention
from progprune_cli.pruning.masks import Masks, apply_masks
from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext, Strategy
from progprune_cli.pruning.strategies.calibration import check_batches
from progprune_cli.pruning.strategies.channel_graph import output_gap
from progprune_cli.pruning.strategies.channels import TOLERANCE
from progprune_cli.pruning.strategies.taylor import first_order_terms

SUPPORTED = "supported: model=gpt's CausalSelfAttention"
IN_ROWS = ("q", "k", "v")  # a head is a block of head_dim output rows of each of these, and the same columns of proj


@dataclass
class HeadsConfig(StrategyConfig):
    criterion: str = choice("l1", "taylor")
    batches: int = MISSING  # taylor: calibration batches


def attentions(model: nn.Module) -> dict[str, CausalSelfAttention]:
    """Every attention module whose heads can be removed, by name, in forward order of definition."""
    return {name: m for name, m in model.named_modules() if isinstance(m, CausalSelfAttention)}


def head_count(attn: CausalSelfAttention) -> int:
    return attn.q.out_features // attn.head_dim


def head_entries(model: nn.Module, unit_masks: Masks) -> Masks:
    """Per parameter of q, k, v and proj, the entries a head's removal keeps: its rows of q/k/v (weight and bias)
    and its columns of proj. proj's bias belongs to no head and stays."""
    modules = attentions(model)
    masks: Masks = {}
    for unit, keep in unit_masks.items():
        attn = modules[unit]
        rows = keep.to("cpu", torch.bool).repeat_interleave(attn.head_dim)
        for kind in IN_ROWS:
            layer = getattr(attn, kind)
            masks[f"{unit}.{kind}.weight"] = rows[:, None].expand_as(layer.weight).clone()
            if layer.bias is not None:
                masks[f"{unit}.{kind}.bias"] = rows.clone()
        masks[f"{unit}.proj.weight"] = rows[None, :].expand_as(attn.proj.weight).clone()
    return masks


def remove_heads(model: nn.Module, pruned: dict[str, list[int]]) -> None:
    """Cut the `pruned` heads (attention name → head indices) out of `model` itself: q, k, v lose those output rows
    and proj those input columns. CausalSelfAttention reads its head count from q's width, so the model runs as is."""
    modules = attentions(model)
    for unit, heads in pruned.items():
        attn = modules[unit]
        keep = torch.ones(head_count(attn), dtype=torch.bool)
        keep[heads] = False
        rows = keep.repeat_interleave(attn.head_dim).nonzero().flatten()
        for kind in IN_ROWS:
            setattr(attn, kind, _cut(getattr(attn, kind), rows, dim=0))
        attn.proj = _cut(attn.proj, rows, dim=1)


def _cut(layer: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A Linear keeping `index` of its outputs (dim 0) or inputs (dim 1); the bias follows only the outputs."""
    weight = layer.weight.detach().index_select(dim, index.to(layer.weight.device))
    out_features, in_features = weight.shape
    small = nn.Linear(in_features, out_features, bias=layer.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        small.weight.copy_(weight)
        if layer.bias is not None:
            bias = layer.bias.detach()
            small.bias.copy_(bias.index_select(0, index.to(bias.device)) if dim == 0 else bias)
    small.train(layer.training)
    return small


def pruned_heads(unit_masks: Masks) -> dict[str, list[int]]:
    return {unit: (~mask).nonzero().flatten().tolist() for unit, mask in unit_masks.items()}


@STRATEGIES.register("heads", HeadsConfig)
class Heads(Strategy):
    """Units are attention modules, one mask entry per head; scores are `l1` (Σ|w| over the head's q/k/v rows and
    proj columns) or `taylor` (Σ_batches |Σ w·∂L/∂w| over those weights and the q/k/v biases)."""

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
        if not attentions(model):
            fused = next((n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)), None)
            if fused is not None:
                raise UserError(f"strategy=heads: {name}'s nn.MultiheadAttention ({fused}) cannot lose a head: torch "
                                "computes it at num_heads × head_dim = embed_dim, the width of its inputs and "
                                f"outputs ({SUPPORTED})")
            raise UserError(f"strategy=heads: {name} has no attention layer it can remove heads from ({SUPPORTED})")
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
        return {unit: _per_head(modules[unit], {f"{kind}.weight": getattr(modules[unit], kind).weight.detach().abs()
                                                for kind in (*IN_ROWS, "proj")})
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


def _head_params(unit: str, attn: CausalSelfAttention) -> list[str]:
    """The parameters a head's entries lie in: q, k, v weights and biases, proj's weight."""
    return [f"{unit}.{kind}.{what}" for kind in IN_ROWS for what in ("weight", "bias")
            if getattr(getattr(attn, kind), what) is not None] + [f"{unit}.proj.weight"]


def _per_head(attn: CausalSelfAttention, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each head's sum of `terms` (q/k/v weight and bias: its rows; proj weight: its columns), in float64 on the CPU."""
    heads, dim = head_count(attn), attn.head_dim
    total = torch.zeros(heads, dtype=torch.float64)
    for name, term in terms.items():
        term = term.detach().double().cpu()
        if name == "proj.weight":
            total += term.view(term.shape[0], heads, dim).sum((0, 2))
        elif name.endswith(".weight"):
            total += term.view(heads, dim, -1).sum((1, 2))
        else:
            total += term.view(heads, dim).sum(1)
    return total
