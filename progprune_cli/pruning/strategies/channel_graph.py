"""Torch-pruning's dependency graph seen by layer name: coupled conv/linear layers, and removing their channels."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from progprune_cli.errors import described
from progprune_cli.pruning.layout import is_transposed, transposed_layers
from progprune_cli.pruning.masks import Masks

if TYPE_CHECKING:
    import torch_pruning as tp

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # and transformers' Conv1D where it is loaded: prunable()
Shape = tuple[int, ...]  # one sample's shape, without the batch dimension
# What the model is run on: a shape (float inputs: zeros, or seeded normal values), or a maker of `n` inputs as
# DataInfo.example gives them (seed None: zeros; token ids for a language model, which a shape cannot describe).
Inputs = Shape | Callable[[int, int | None], torch.Tensor]


@dataclass(frozen=True)
class ChannelGraph:
    """Which layers' output channels must go together, found by tracing one forward pass."""

    order: tuple[str, ...]  # prunable layers in the order the forward pass runs them
    groups: dict[str, tuple[str, ...]]  # root layer → every layer whose output channels are coupled to it
    outputs: frozenset[str]  # roots whose channels are the model's outputs (the classifier)
    widths: dict[str, int]  # root layer → channels a unit mask covers (per block where `folds` splits them)
    first: str | None = None  # the first prunable layer whose input depends on the model's input
    blocked: dict[str, str] = field(default_factory=dict)  # root → why its channels cannot be removed exactly
    # Root → into how many equal blocks grouped convolutions split its channels: a unit mask is one block's, and
    # the same positions go from every block (what a grouped convolution can lose and still compute the same).
    folds: dict[str, int] = field(default_factory=dict)
    # Roots whose channels reach exactly one other layer's inputs through elementwise ops only: an MLP's hidden layer
    # (Linear → activation → Linear), which a transformer may lose without touching its residual stream or attention.
    hidden: frozenset[str] = frozenset()
    attention: bool = False  # the model has an attention layer (a transformer): only `hidden` roots are units


def prunable(module: nn.Module) -> bool:
    """A conv/linear layer whose output channels can be units (transformers' Conv1D is a linear layer)."""
    return isinstance(module, PRUNABLE) or is_transposed(module)


def out_major(module: nn.Module, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`, shaped like `module`'s weight, with one row per output channel (Conv1D stores its weight (in, out))."""
    return tensor.t() if is_transposed(module) else tensor


def has_attention(model: nn.Module) -> bool:
    """Whether `model` has an attention layer: nn.MultiheadAttention, or a module whose class is named so (torch,
    timm and transformers share no attention base class; GPT's CausalSelfAttention, GPT2Attention, timm's Attention)."""
    return any(isinstance(m, nn.MultiheadAttention) or "Attention" in type(m).__name__ for m in model.modules())


def trace(model: nn.Module, shape: Inputs) -> ChannelGraph:
    """The channel coupling of `model` for inputs of `shape` (a copy is traced; `model` is left as it is)."""
    probe = copy.deepcopy(model)
    names = {m: n for n, m in probe.named_modules()}
    first = _first_seeing_input(probe, shape)
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(names[m]) if names[m] not in order else None)
             for m in probe.modules() if prunable(m)]
    try:
        graph = _dependency_graph(probe, shape)
    finally:
        for hook in hooks:
            hook.remove()
    modules = dict(probe.named_modules())
    rank = {name: i for i, name in enumerate(modules)}
    groups: dict[str, tuple[str, ...]] = {}
    outputs: set[str] = set()
    blocked: dict[str, str] = {}
    folds: dict[str, int] = {}
    hidden: set[str] = set()
    seen: set[str] = set()
    for name in order:
        if name in seen or modules[name] not in graph.module2node:
            continue
        layer = modules[name]
        try:
            group = graph.get_pruning_group(layer, graph.get_pruner_of_module(layer).prune_out_channels, [0])
        except Exception as error:  # noqa: BLE001 - torch-pruning cannot follow this layer: it stays as it is
            groups[name], blocked[name] = (name,), f"torch-pruning cannot follow its channels: {described(error)}"
            seen.add(name)
            continue
        producers = [dep for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)]
        members = {names.get(dep.target.module) for dep in producers} & set(order)
        groups[name] = tuple(n for n in order if n in members)
        seen |= members
        # A producer with no consumer is where the forward pass ends: these channels are the model's outputs.
        if any(not dep.target.outputs for dep in producers):
            outputs.add(name)
        if _feeds_one_layer(group, layer):
            hidden.add(name)
        touched = sorted({names[dep.target.module] for dep, _ in group if dep.target.module in names},
                         key=rank.__getitem__)
        fold, grouped = _fold(group, names)
        width = int(graph.get_out_channels(layer))
        why = next((why for why in (_inexact(n, modules[n]) for n in touched) if why is not None), None)
        if why is None and fold > 1 and (width % fold or width == fold):
            why = (f"{', '.join(grouped)} (grouped convolution) has one of these {width} channels per group, so none "
                   "can go" if width == fold else f"{', '.join(grouped)} (grouped convolutions) split these {width} "
                   "channels into groups of different sizes")
        if why is not None:
            blocked[name] = why
        elif fold > 1:
            folds[name] = fold
    widths = {name: int(graph.get_out_channels(modules[name])) // folds.get(name, 1) for name in groups}
    return ChannelGraph(tuple(order), groups, frozenset(outputs), widths, first, blocked, folds, frozenset(hidden),
                        has_attention(probe))


# Autograd ops of attention, which torch-pruning follows as elementwise: q, k and v projections coupled through them
# look like a gated MLP's two input projections, yet their channels are heads' dimensions, which cannot go one by one.
_ATTENTION_OPS = ("Attention", "Softmax", "Bmm", "Transpose", "Baddbmm")


def _feeds_one_layer(group: tp.Group, layer: nn.Module) -> bool:
    """Whether `group` (the output channels of the linear `layer`) is `layer`, elementwise ops (activation, bias,
    dropout, reshapes) and one other linear layer's inputs: nothing else (no norm, residual add, attention, split of
    a fused q/k/v) sees them. A gated MLP (Llama's down(act(gate(x)) * up(x))) has a second linear layer whose
    outputs are multiplied in: its channels go with these, and no attention op may be among those between.
    Linear: nn.Linear or transformers' Conv1D."""
    import torch_pruning as tp

    between = {tp.ops.OPTYPE.ELEMENTWISE, tp.ops.OPTYPE.RESHAPE}
    others = {(dep.target, dep.handler.__name__) for dep, _ in group
              if dep.target.type not in between and dep.target.module is not layer}
    consumers = [node for node, how in others if how == "prune_in_channels"]
    gated = len(others) > len(consumers)
    attention = any(op in type(getattr(dep.target, "grad_fn", None)).__name__ for dep, _ in group
                    if dep.target.type == tp.ops.OPTYPE.ELEMENTWISE for op in _ATTENTION_OPS)
    return _linear(layer) and len(consumers) == 1 and not (gated and attention) and all(
        _linear(node.module) and how in ("prune_in_channels", "prune_out_channels") for node, how in others)


def _linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or is_transposed(module)


def _inexact(name: str, module: nn.Module) -> str | None:
    """Why removing channels that pass through `module` cannot give what the masked model computes (None: it can)."""
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        # Its mean and variance are taken over the channels: a zeroed channel still counts, a removed one does not.
        return f"{name} ({type(module).__name__}) normalizes over these channels, so removing some changes the rest"
    # nn.MultiheadAttention needs no case: a model with attention prunes only MLP hidden layers, which never reach it.
    return None


def _fold(group: tp.Group, names: dict[nn.Module, str]) -> tuple[int, list[str]]:
    """Into how many blocks the grouped convolutions in `group` split its channels (the least common multiple of
    their groups: one block-periodic choice suits all of them), and their names. Depthwise convolutions, whose
    channels torch-pruning couples through, split nothing."""
    import torch_pruning as tp

    grouped = {dep.target.module for dep, _ in group
               if dep.target.type == tp.ops.OPTYPE.CONV and getattr(dep.target.module, "groups", 1) > 1}
    return math.lcm(1, *(m.groups for m in grouped)), sorted(names.get(m, "?") for m in grouped)


def _channels(graph: tp.DependencyGraph, layer: nn.Module, positions: list[int]) -> list[int]:
    """The channels of `layer`'s unit at `positions` of one block, in every block its grouped convolutions make."""
    fold, _ = _fold(graph.get_pruning_group(layer, graph.get_pruner_of_module(layer).prune_out_channels, [0]), {})
    if fold == 1:
        return positions
    block = int(graph.get_out_channels(layer)) // fold
    return [b * block + i for b in range(fold) for i in positions]


def _first_seeing_input(model: nn.Module, shape: Inputs) -> str | None:
    """The first conv/linear the forward pass runs on something computed from the input (not, say, from a learned
    query): with the weights frozen, only what depends on the input needs a gradient."""
    names = {m: n for n, m in model.named_modules()}
    seen: list[str] = []
    param = next(model.parameters())
    frozen = {p: p.requires_grad for p in model.parameters()}
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(names[m]) if i and torch.is_tensor(i[0]) and
                                     i[0].requires_grad else None)
             for m in model.modules() if prunable(m)]
    training = model.training
    try:
        model.requires_grad_(False).eval()  # eval: a batch of one, and no batch-norm statistics move
        x = batch(shape, 1, None, param)
        with torch.enable_grad():
            # Token ids carry no gradient: what depends on them starts at the embeddings that read them.
            embedded = [] if x.is_floating_point() else [
                m.register_forward_hook(lambda m, i, o: o.requires_grad_()) for m in model.modules()
                if isinstance(m, nn.Embedding)]
            try:
                model(x.requires_grad_() if x.is_floating_point() else x)
            finally:
                for hook in embedded:
                    hook.remove()
    finally:
        for hook in hooks:
            hook.remove()
        for p, wanted in frozen.items():
            p.requires_grad_(wanted)
        model.train(training)
    return seen[0] if seen else None


def kept_entries(model: nn.Module, shape: Inputs, pruned: dict[str, list[int]]) -> Masks:
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


def remove_channels(model: nn.Module, shape: Inputs, pruned: dict[str, list[int]]) -> nn.Module:
    """A physically smaller copy of `model` with the `pruned` channels (root → indices) and their partners gone."""
    small = copy.deepcopy(model)
    remove_in_place(small, shape, pruned)
    return small


def remove_in_place(model: nn.Module, shape: Inputs, pruned: dict[str, list[int]]) -> None:
    """Remove channels from `model` itself (tracing switches it to eval; its mode is put back). Indices are positions
    in a unit mask: where grouped convolutions split a unit's channels into blocks, the same ones go from each."""
    training = model.training
    graph = _dependency_graph(model, shape)
    modules = dict(model.named_modules())
    grouped = any(isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 for m in model.modules())
    for name, idxs in pruned.items():
        if idxs:
            layer = modules[name]
            channels = _channels(graph, layer, idxs) if grouped else idxs
            graph.get_pruning_group(layer, graph.get_pruner_of_module(layer).prune_out_channels, channels).prune()
    model.train(training)


def output_gap(a: nn.Module, b: nn.Module, shape: Inputs, samples: int = 4, seed: int = 0) -> float:
    """max |a(x) − b(x)| on a seeded random batch, both in float64 eval mode so only structure can differ."""
    x = batch(shape, samples, seed, torch.zeros((), dtype=torch.float64))
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


def _dependency_graph(model: nn.Module, shape: Inputs) -> tp.DependencyGraph:
    # Imported here: torch-pruning imports timm when it is installed, and timm torchvision (~2.7 s on 2 cores), which
    # a run of a weight strategy or a dense run never needs.
    import torch_pruning as tp

    example = batch(shape, 1, None, next(model.parameters()))
    conv1d = next(iter(transposed_layers()), None)
    # torch-pruning knows no Conv1D: without a pruner of its own it sees only loose parameters, never a layer.
    pruners = {conv1d: _conv1d_pruner()} if conv1d is not None and any(map(is_transposed, model.modules())) else None
    with torch.enable_grad():  # torch-pruning traces through autograd
        return tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False,
                                                     customized_pruners=pruners)


def _conv1d_pruner() -> tp.pruner.BasePruningFunc:
    """torch-pruning's LinearPruner for transformers' Conv1D: y = x·W + b with W (in, out), out = nf, in = nx."""
    import torch_pruning as tp

    class Conv1DPruner(tp.pruner.function.BasePruningFunc):
        def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
            keep = sorted(set(range(layer.nf)) - set(idxs))
            layer.nf = len(keep)
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 1)
            layer.bias = self._prune_parameter_and_grad(layer.bias, keep, 0)
            return layer

        def prune_in_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
            keep = sorted(set(range(layer.nx)) - set(idxs))
            layer.nx = len(keep)
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 0)
            return layer

        def get_out_channels(self, layer: nn.Module) -> int:
            return layer.nf

        def get_in_channels(self, layer: nn.Module) -> int:
            return layer.nx

    return Conv1DPruner()


def batch(inputs: Inputs, n: int, seed: int | None, like: torch.Tensor) -> torch.Tensor:
    """`n` inputs (zeros when `seed` is None, else seeded values) on `like`'s device, floating ones in its dtype."""
    if callable(inputs):
        x = inputs(n, seed)
        return x.to(like.device, like.dtype if x.is_floating_point() else x.dtype)
    if seed is None:
        return torch.zeros((n, *inputs), dtype=like.dtype, device=like.device)
    return torch.randn((n, *inputs), generator=torch.Generator().manual_seed(seed), dtype=like.dtype).to(like.device)
