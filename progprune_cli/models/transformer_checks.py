"""One-line refusals shared by the sequence and transformer models: wrong data kind, dropout, head splits."""

from __future__ import annotations

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError


def needs_tokens(name: str, info: DataInfo) -> None:
    """A language model reads token ids: image data is refused before anything is built."""
    if not info.vocab:
        raise UserError(f"model={name}: needs token data (dataset=text); got {info.describe} images")


def needs_images(name: str, info: DataInfo) -> None:
    """An image model reads pixels: token data is refused before anything is built."""
    if info.vocab:
        raise UserError(f"model={name}: needs images; got {info.describe}")


def check_dropout(value: float) -> None:
    """A dropout probability of 1 would zero every activation: [0, 1) only."""
    if not 0.0 <= value < 1.0:
        raise UserError(f"model.dropout: got {value}; must be in [0, 1)")


def check_heads(heads_key: str, heads: int, width_key: str, width: int) -> None:
    """Attention splits the width into equal heads."""
    if width % heads:
        raise UserError(f"model.{heads_key}: got {heads}; must divide model.{width_key} ({width})")
