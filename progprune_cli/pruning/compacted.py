"""The compacted checkpoint: a model with channels (or attention heads) physically removed, stored as tensors and
plain values only (the registry name and values of its model, the data shape, the unit masks) and rebuilt from them
on load."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from progprune_cli.checkpoints import save_checkpoint
from progprune_cli.config import ModelConfig
from progprune_cli.config.load import load_component
from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.models import build_model
from progprune_cli.pruning.masks import Masks
from progprune_cli.pruning.strategies import channel_graph as cg
from progprune_cli.pruning.strategies.channels import TOLERANCE, inputs_of
from progprune_cli.pruning.strategies.heads import remove_heads

FORMAT, VERSION = "progprune.compacted", 1
_PLAIN = (str, int, float, bool, type(None))
# What a unit mask removes, by the strategy's granularity: the same call the strategy compacted with, on a fresh
# model. A file without the key (written before heads could be compacted) removes channels.
REMOVERS: dict[str, Callable[[nn.Module, DataInfo, dict[str, list[int]]], None]] = {
    "channel": lambda model, info, pruned: cg.remove_in_place(model, inputs_of(info), pruned),
    "head": lambda model, info, pruned: remove_heads(model, pruned),
}


def save_compacted(path: str | Path, module: nn.Module, unit_masks: Masks, model_cfg: ModelConfig,
                   info: DataInfo, extra: dict[str, Any] | None = None, granularity: str = "channel") -> Path:
    """Write the compacted `module` as tensors and plain values only (loads with `torch.load(weights_only=True)`).

    The file holds what rebuilds the architecture without unpickling code: the model's registry name and options,
    the data shape, and the unit masks (the channels the strategy removed, by root layer), plus the kept width of
    every conv/linear layer as a check. It is rebuilt and compared with `module` before anything is written, so a
    file on disk always loads back to the same model. `extra`: plain values a stage keeps beside it (its rows).
    `granularity`: what the unit masks remove (the strategy's: channel or head; a key of REMOVERS).
    """
    state = {
        "format": FORMAT,
        "version": VERSION,
        "stage": "compact",
        "model": {"name": model_cfg.name, "options": _plain(component_keys(model_cfg), "model options")},
        "info": dataclasses.asdict(info),
        # Only where it is not channels: a channel file stays exactly what version 1 always wrote.
        **({} if granularity == "channel" else {"granularity": granularity}),
        "unit_masks": {unit: mask.detach().to("cpu", torch.bool) for unit, mask in unit_masks.items()},
        "widths": widths(module),
        "state_dict": {key: value.detach().cpu() for key, value in module.state_dict().items()},
        **(extra or {}),
    }
    rebuilt = rebuild_compacted(state, Path(path))
    gap = cg.output_gap(module, rebuilt, info.example)  # images: the seeded normal batch a shape gives; text: token ids
    if gap > TOLERANCE:
        raise RuntimeError(f"compacted model rebuilt from its masks differs from the original by {gap:.3g}")
    return save_checkpoint(Path(path), state)


def rebuild_compacted(data: dict[str, Any], path: Path) -> nn.Module:
    """The compacted architecture from the registry with the saved channels (or heads) removed, its weights loaded."""
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        found = data.get("format"), data.get("version")
        raise UserError(f"{path}: not a {FORMAT} v{VERSION} checkpoint (format {found[0]!r}, version {found[1]!r})")
    info = DataInfo(**data["info"])
    model = fresh_model(load_component("model", {"name": data["model"]["name"], **data["model"]["options"]}), info)
    pruned = {unit: (~mask).nonzero().flatten().tolist() for unit, mask in data["unit_masks"].items()}
    granularity = data.get("granularity", "channel")
    if granularity not in REMOVERS:
        raise UserError(f"{path}: removes {granularity!r} units; this progprune compacts {', '.join(REMOVERS)}")
    REMOVERS[granularity](model, info, pruned)
    got = widths(model)
    if got != data["widths"]:
        layer = next(k for k in sorted(set(got) | set(data["widths"])) if got.get(k) != data["widths"].get(k))
        raise UserError(f"{path}: layer {layer} rebuilds {got.get(layer)} channels wide but was saved "
                        f"{data['widths'].get(layer)} wide; the model's code changed since the run")
    load_weights(model, data["state_dict"], path)
    return model


def component_keys(cfg: Any) -> dict[str, Any]:
    """A component config's values besides its name (what its registered schema adds)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "name"}


def widths(module: nn.Module) -> dict[str, int]:
    """Output channels (features) of every conv/linear layer: what compaction changes."""
    return {name: int(cg.out_major(m, m.weight).shape[0]) for name, m in module.named_modules() if cg.prunable(m)}


def fresh_model(cfg: ModelConfig, info: DataInfo) -> nn.Module:
    # Its initial weights are overwritten: keep the caller's random stream where it was.
    with torch.random.fork_rng(devices=[]):
        return build_model(cfg, info)


def load_weights(model: nn.Module, state: Any, path: Path) -> None:
    if not isinstance(state, dict):
        raise UserError(f"{path}: holds no state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = " ".join(str(error).split())  # torch lists every mismatch on its own line
        raise UserError(f"{path}: weights do not fit the rebuilt {type(model).__name__}: {detail}") from None


def _plain(value: Any, what: str) -> Any:
    """`value` as dicts, lists and scalars only: what weights_only loading accepts without running code."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, what) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, what) for k, v in value.items()}
    raise TypeError(f"{what}: {type(value).__name__} is not a plain value; cannot save it without pickling code")
