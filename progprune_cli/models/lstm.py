"""The seed's recurrent network as a language model: token embedding → LSTM → a linear head over the vocabulary."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.config import ModelConfig
from progprune_cli.data import DataInfo
from progprune_cli.models.base import MODELS
from progprune_cli.models.transformer_checks import check_dropout, needs_tokens


@dataclass
class LSTMConfig(ModelConfig):
    layers: int = MISSING
    hidden: int = MISSING
    dropout: float = MISSING


@MODELS.register("lstm", LSTMConfig)
def build(cfg: LSTMConfig, info: DataInfo) -> nn.Module:
    needs_tokens("lstm", info)
    check_dropout(cfg.dropout)
    return LSTMLanguageModel(info.vocab, cfg.layers, cfg.hidden, cfg.dropout)


class LSTMLanguageModel(nn.Module):
    """Token ids (batch, t) → next-token logits (batch, t, vocab); the embedding is `hidden` wide."""

    def __init__(self, vocab: int, layers: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        # Dropout on the non-recurrent connections only (Zaremba et al. 2014): into the first layer, between layers
        # (nn.LSTM's own, which it warns about for one layer) and out of the last.
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(hidden, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.drop(self.embedding(idx)))
        return self.head(self.drop(out))
