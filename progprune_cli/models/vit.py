"""A small Vision Transformer (Dosovitskiy et al. 2021) from torchvision, at the data's image size and channels."""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import MISSING
from torch import nn

from progprune_cli.config import ModelConfig
from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.models.base import MODELS
from progprune_cli.models.transformer_checks import check_dropout, check_heads, needs_images


@dataclass
class ViTConfig(ModelConfig):
    patch_size: int = MISSING
    layers: int = MISSING
    heads: int = MISSING
    hidden_dim: int = MISSING
    mlp_dim: int = MISSING
    dropout: float = MISSING


@MODELS.register("vit", ViTConfig)
def build(cfg: ViTConfig, info: DataInfo) -> nn.Module:
    needs_images("vit", info)
    if info.height != info.width or info.width % cfg.patch_size:
        raise UserError(f"model.patch_size: got {cfg.patch_size}; must divide the side of square images; the data's "
                        f"are {info.describe}")
    check_heads("heads", cfg.heads, "hidden_dim", cfg.hidden_dim)
    check_dropout(cfg.dropout)
    from torchvision.models import VisionTransformer  # here, not at the top: importing torchvision costs ~2.4 s

    model = VisionTransformer(image_size=info.width, patch_size=cfg.patch_size, num_layers=cfg.layers,
                              num_heads=cfg.heads, hidden_dim=cfg.hidden_dim, mlp_dim=cfg.mlp_dim,
                              dropout=cfg.dropout, num_classes=info.num_classes)
    if info.channels != model.conv_proj.in_channels:
        model.conv_proj = patch_conv(info.channels, cfg.hidden_dim, cfg.patch_size)
    return model


def patch_conv(in_channels: int, hidden_dim: int, patch: int) -> nn.Conv2d:
    """torchvision's patch embedding (a patch×patch conv of stride patch; it has 3 inputs) for `in_channels`,
    initialised as torchvision initialises its own."""
    conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch, stride=patch)
    nn.init.trunc_normal_(conv.weight, std=math.sqrt(1 / (in_channels * patch * patch)))
    nn.init.zeros_(conv.bias)
    return conv
