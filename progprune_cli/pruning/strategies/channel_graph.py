"""Torch-pruning's dependency graph seen by layer name: coupled conv/linear layers, and removing their channels."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from progprune_cli.pruning.masks import Masks

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
Shape = tuple[int, ...]  # one sample's shape, without the batch dimension


@dataclass(frozen=True)
class ChannelGraph:
    """Which layers' output channels must go together, found by tracing one forward pass."""

    order: tuple[str, ...]  # prunable layers in the order the forward pass runs them
    groups: dict[str, tuple[str, ...]]  # root layer → every layer whose output channels are coupled to it
    outputs: frozenset[str]  # roots whose channels are the model's outputs (the classifier)
    widths: dict[str, int]  # root layer → output channels


def trace(model: nn.Module, shape: Shape) -> ChannelGraph:
    """The channel coupling of `model` for inputs of `shape` (a copy is traced; `model` is left as it is)."""
    probe = copy.deepcopy(model)
    order: list[str] = []
    names = {m: n for n, m in probe.named_modules()}
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(names[m]) if names[m] not in order else None)
             for m in probe.modules() if isinstance(m, PRUNABLE)]
    try:
        graph = _dependency_graph(probe, shape)
    finally:
        for hook in hooks:
            hook.remove()
    modules = dict(probe.named_modules())
    groups: dict[str, tuple[str, ...]] = {}
    outputs: set[str] = set()
    seen: set[str] = set()
    for name in order:
        if name in seen or modules[name] not in graph.module2node:
            continue
        layer = modules[name]
        group = graph.get_pruning_group(layer, graph.get_pruner_of_module(layer).prune_out_channels, [0])
        producers = [dep for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)]
        members = {names.get(dep.target.module) for dep in producers} & set(order)
        groups[name] = tuple(n for n in order if n in members)
        seen |= members
        # A producer with no consumer is where the forward pass ends: these channels are the model's outputs.
        if any(not dep.target.outputs for dep in producers):
            outputs.add(name)
    widths = {name: int(graph.get_out_channels(modules[name])) for name in groups}
    return ChannelGraph(tuple(order), groups, frozenset(outputs), widths)


def kept_entries(model: nn.Module, shape: Shape, pruned: dict[str, list[int]]) -> Masks:
    """Per parameter, the entries that survive removing `pruned` (root → channels), found by torch-pruning itself.

    Every entry of a copy is set to its own flat index before pruning, so whatever torch-pruning keeps (weights,
    biases, batch-norm, residual partners, inputs of the next layers) names itself afterwards.
    """
    probe = copy.deepcopy(model).to("cpu", torch.float64)
    with torch.no_grad():
        for param in probe.parameters():
            param.copy_(torch.arange(param.numel(), dtype=torch.float64).view_as(param))
    remove_in_place(probe, shape, pruned)
    shapes = {name: p.shape for name, p in model.named_parameters()}
    masks = {}
    for name, param in probe.named_parameters():
        mask = torch.zeros(shapes[name].numel(), dtype=torch.bool)
        mask[param.detach().flatten().long()] = True
        masks[name] = mask.view(shapes[name])
    return masks


def remove_channels(model: nn.Module, shape: Shape, pruned: dict[str, list[int]]) -> nn.Module:
    """A physically smaller copy of `model` with the `pruned` channels (root → indices) and their partners gone."""
    small = copy.deepcopy(model)
    remove_in_place(small, shape, pruned)
    return small


def remove_in_place(model: nn.Module, shape: Shape, pruned: dict[str, list[int]]) -> None:
    """Remove channels from `model` itself (tracing switches it to eval; its mode is put back)."""
    training = model.training
    graph = _dependency_graph(model, shape)
    modules = dict(model.named_modules())
    for name, idxs in pruned.items():
        if idxs:
            layer = modules[name]
            graph.get_pruning_group(layer, graph.get_pruner_of_module(layer).prune_out_channels, idxs).prune()
    model.train(training)


def output_gap(a: nn.Module, b: nn.Module, shape: Shape, samples: int = 4, seed: int = 0) -> float:
    """max |a(x) − b(x)| on a seeded random batch, both in float64 eval mode so only structure can differ."""
    x = torch.randn((samples, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        ya = copy.deepcopy(a).to("cpu", torch.float64).eval()(x)
        yb = copy.deepcopy(b).to("cpu", torch.float64).eval()(x)
    return float((ya - yb).abs().max())


def guess_shape(model: nn.Module, largest: int = 512) -> Shape:
    """Without the data's shape: the smallest square input the model accepts (one-sample forward passes, on a copy)."""
    first = next((m for m in model.modules() if isinstance(m, PRUNABLE)), None)
    if first is None:
        raise ValueError("no conv or linear layer")
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    probe = copy.deepcopy(model).cpu().eval()
    for size in range(1, largest + 1):
        shape = (first.in_channels, *(size,) * (first.weight.dim() - 2))
        try:
            with torch.no_grad():
                probe(torch.zeros((1, *shape), dtype=first.weight.dtype))
            return shape
        except Exception:  # noqa: BLE001 - any failure just means "not this size"
            continue
    raise ValueError(f"no square input up to {largest} pixels fits the model")


def _dependency_graph(model: nn.Module, shape: Shape) -> tp.DependencyGraph:
    param = next(model.parameters())
    example = torch.zeros((1, *shape), dtype=param.dtype, device=param.device)
    with torch.enable_grad():  # torch-pruning traces through autograd
        return tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
