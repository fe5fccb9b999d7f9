"""A decoder-only transformer language model (GPT-2's layout): token + position embeddings, pre-LayerNorm blocks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import MISSING
from torch import nn
from torch.nn import functional as F

from progprune_cli.config import ModelConfig
from progprune_cli.data import DataInfo
from progprune_cli.models.base import MODELS
from progprune_cli.models.transformer_checks import check_dropout, check_heads, needs_tokens


@dataclass
class GPTConfig(ModelConfig):
    n_layer: int = MISSING
    n_head: int = MISSING
    n_embd: int = MISSING
    dropout: float = MISSING
    bias: bool = MISSING


@MODELS.register("gpt", GPTConfig)
def build(cfg: GPTConfig, info: DataInfo) -> nn.Module:
    needs_tokens("gpt", info)
    check_heads("n_head", cfg.n_head, "n_embd", cfg.n_embd)
    check_dropout(cfg.dropout)
    # The context length is the data's block: one value, in the dataset's config.
    return GPT(info.vocab, info.width, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.dropout, cfg.bias)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention through torch's scaled_dot_product_attention."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool) -> None:
        super().__init__()
        # Separate q, k, v and proj layers, not one fused (3·n_embd) Linear: removing head h is then cutting the same
        # rows of q, k, v and columns of proj, each a layer of its own that weight masks and channel pruning see.
        self.q, self.k, self.v = (nn.Linear(n_embd, n_embd, bias=bias) for _ in range(3))
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        # The head count is read from q's width at every call, so a copy with heads removed runs unchanged.
        self.head_dim = n_embd // n_head
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (layer(x).view(b, t, -1, self.head_dim).transpose(1, 2) for layer in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, -1)))


class Block(nn.Module):
    """x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)) with a 4× GELU hidden layer."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd, bias=bias), nn.GELU(),
                                 nn.Linear(4 * n_embd, n_embd, bias=bias), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token ids (batch, t ≤ block) → next-token logits (batch, t, vocab)."""

    def __init__(self, vocab: int, block: int, n_layer: int, n_head: int, n_embd: int, dropout: float,
                 bias: bool) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, n_embd)
        self.pos = nn.Embedding(block, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        # Not tied to tok.weight (GPT-2 ties them): one tensor under two names would get two masks, and pruning one
        # would silently prune the other.
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self._init(n_layer)

    def _init(self, n_layer: int) -> None:
        """GPT-2's initialisation: N(0, 0.02), and residual projections scaled by 1/√(2·n_layer)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for layer in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(layer.weight, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(positions))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))
