"""`model=timm model.arch=NAME`: any model of timm (the optional `models` extra), built for the data's classes and
input channels; `model.weights` is a file, or DEFAULT when the local Hugging Face or torch hub cache holds the
arch's pretrained file (never downloaded)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.models.base import MODELS
from progprune_cli.models.weights import Ends, SourcedConfig, given_file

# What timm's Hugging Face repositories name the weights file, in the order timm itself tries them.
HF_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class TimmConfig(SourcedConfig):
    arch: Optional[str] = MISSING

    @property
    def source(self) -> str:
        return f"timm:{self.arch}"

    def code_identity(self) -> str | None:
        return f"timm {timm_module().__version__}"

    def weights_file(self) -> Path:
        return default_file(timm_arch(self)) if self.weights == "DEFAULT" else given_file(str(self.weights))

    def ends(self, model: nn.Module) -> Ends:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        head, stem = cfg.get("classifier"), cfg.get("first_conv")
        return Ends(head if isinstance(head, str) else None, stem if isinstance(stem, str) else None)


def timm_module() -> ModuleType:
    """timm, or a one-line error naming the extra that installs it."""
    try:
        import timm
    except ImportError:
        raise UserError("model=timm needs the timm package: pip install 'progprune[models]' (in a checkout: "
                        "pip install -e '.[models]')") from None
    return timm


def timm_arch(cfg: TimmConfig) -> str:
    """`model.arch`, checked against timm's models (a pretrained tag, resnet18.a1_in1k, is allowed)."""
    timm = timm_module()
    if cfg.arch is None:
        raise UserError("model.arch: missing; choose a timm model, e.g. model.arch=resnet18 (all: timm.list_models())")
    if not timm.is_model(cfg.arch):
        close = difflib.get_close_matches(cfg.arch, timm.list_models(), n=4, cutoff=0.6)
        hint = f"close: {', '.join(close)}; " if close else ""
        raise UserError(f"model.arch={cfg.arch}: not a timm model ({hint}all: timm.list_models())")
    return cfg.arch


def default_file(arch: str) -> Path:
    """The arch's pretrained file where timm would have cached it (Hugging Face hub cache, else the torch hub's),
    looked up without the network; not there: a one-line error saying to download it and pass its path."""
    pretrained = timm_module().models.get_pretrained_cfg(arch)
    hub_id = getattr(pretrained, "hf_hub_id", None)
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        names = [pretrained.hf_hub_filename] if getattr(pretrained, "hf_hub_filename", None) else list(HF_FILES)
        for name in names:
            found = try_to_load_from_cache(hub_id, name)
            if isinstance(found, str):
                return given_file(found)
    url = getattr(pretrained, "url", None)
    if url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if cached.is_file():
            return given_file(str(cached))
    where = f"https://huggingface.co/{hub_id}" if hub_id else (url or "its source")
    raise UserError(f"model.weights=DEFAULT: timm's {arch} weights are not in the local cache and progprune does not "
                    f"download; download them from {where} and pass the file: model.weights=PATH")


@MODELS.register("timm", TimmConfig)
def build(cfg: TimmConfig, info: DataInfo) -> nn.Module:
    timm = timm_module()
    return timm.create_model(timm_arch(cfg), pretrained=False, num_classes=info.num_classes,
                             in_chans=info.channels)
