"""What strategy=heads needs of each kind of attention module, one adapter per kind found by the module's class:
its head count, which head each entry of its parameters belongs to, and how to cut heads out."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from progprune_cli.models.gpt import CausalSelfAttention

SUPPORTED = ("supported: model=gpt's CausalSelfAttention, nn.MultiheadAttention (model=vit), model=hf's "
             "GPT2Attention and LlamaAttention, MistralAttention, Qwen2Attention")


class PrunedMultiheadAttention(nn.Module):
    """nn.MultiheadAttention with heads removed: q, k, v project embed_dim to heads·head_dim (no longer embed_dim)
    and proj back to embed_dim. Called and answering as nn.MultiheadAttention is (torchvision's EncoderBlock calls
    `(x, x, x, need_weights=False)` and reads `[0]`), with its dropout on the attention weights while training."""

    def __init__(self, q: nn.Linear, k: nn.Linear, v: nn.Linear, proj: nn.Linear, head_dim: int, dropout: float,
                 batch_first: bool) -> None:
        super().__init__()
        self.q, self.k, self.v, self.proj = q, k, v, proj
        self.head_dim, self.dropout, self.batch_first = head_dim, dropout, batch_first

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        # nn.MultiheadAttention takes is_causal only as a hint that attn_mask is causal: attn_mask decides.
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        (b, length, _), source = query.shape, key.shape[1]
        q, k, v = (layer(x).view(b, x.shape[1], -1, self.head_dim).transpose(1, 2)
                   for layer, x in ((self.q, query), (self.k, key), (self.v, value)))
        mask = _additive(attn_mask, key_padding_mask, b, length, source, q.dtype)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) * self.head_dim ** -0.5
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            y = F.dropout(weights, dropout) @ v
            weights = weights.mean(1) if average_attn_weights else weights
            weights = weights.squeeze(0) if unbatched else weights
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = self.proj(y.transpose(1, 2).reshape(b, length, -1))
        if unbatched:
            return y.squeeze(0), weights
        return (y if self.batch_first else y.transpose(0, 1)), weights


def _additive(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, batch: int, length: int,
              source: int, dtype: torch.dtype) -> torch.Tensor | None:
    """nn.MultiheadAttention's masks (bool: True = not attended; float: added) as one float mask to add to the
    (batch, heads, length, source) scores; a per-head attn_mask would name heads that may be gone: refused."""
    if attn_mask is not None and attn_mask.dim() != 2:
        raise ValueError("a MultiheadAttention with heads removed takes a (length, source) attn_mask only, not a "
                         "per-head one")
    mask = None if attn_mask is None else _as_float(attn_mask, dtype).view(1, 1, length, source)
    if key_padding_mask is not None:
        padding = _as_float(key_padding_mask, dtype).view(batch, 1, 1, source)
        mask = padding if mask is None else mask + padding
    return mask


def _as_float(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


class HeadLayout:
    """One kind of attention module. `owners` names, per parameter (by its name inside the module) that holds some
    head's entries, the head each entry belongs to (-1: none; expanded views, not copies)."""

    label: ClassVar[str]

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        raise NotImplementedError

    @classmethod
    def head_dim(cls, module: nn.Module) -> int:
        return int(module.head_dim)

    @classmethod
    def heads(cls, module: nn.Module) -> int:
        raise NotImplementedError

    @classmethod
    def refusal(cls, module: nn.Module) -> str | None:
        """Why this module cannot lose heads (None: it can)."""
        return None

    @classmethod
    def owners(cls, module: nn.Module) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @classmethod
    def cut(cls, module: nn.Module, rows: torch.Tensor) -> nn.Module:
        """The module computing what `module` does with only the heads whose q/k/v rows (per third) are `rows`:
        `module` itself cut in place, or a new module to put in its place."""
        raise NotImplementedError


def head_rows(heads: int, head_dim: int) -> torch.Tensor:
    """The head of each of heads·head_dim rows."""
    return torch.arange(heads).repeat_interleave(head_dim)


class SeparateLayout(HeadLayout):
    """q, k, v and an output projection, each an nn.Linear of its own: a head is head_dim rows of q, k, v and the
    same columns of the output."""

    names: ClassVar[tuple[str, str, str, str]] = ("q", "k", "v", "proj")

    @classmethod
    def heads(cls, module: nn.Module) -> int:
        return getattr(module, cls.names[0]).out_features // cls.head_dim(module)

    @classmethod
    def owners(cls, module: nn.Module) -> dict[str, torch.Tensor]:
        rows = head_rows(cls.heads(module), cls.head_dim(module))
        owners = {}
        for name in cls.names[:3]:
            layer = getattr(module, name)
            owners[f"{name}.weight"] = rows[:, None].expand(layer.weight.shape)
            if layer.bias is not None:
                owners[f"{name}.bias"] = rows
        out = getattr(module, cls.names[3])
        owners[f"{cls.names[3]}.weight"] = rows[None, :].expand(out.weight.shape)
        return owners

    @classmethod
    def cut(cls, module: nn.Module, rows: torch.Tensor) -> nn.Module:
        for name in cls.names[:3]:
            _narrow_linear(getattr(module, name), rows, dim=0)
        _narrow_linear(getattr(module, cls.names[3]), rows, dim=1)
        return module


class GPTLayout(SeparateLayout):
    label = "CausalSelfAttention"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, CausalSelfAttention)


class PrunedMHALayout(SeparateLayout):
    """What MultiheadLayout's cut leaves: it can lose further heads."""

    label = "PrunedMultiheadAttention"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, PrunedMultiheadAttention)


class LlamaLayout(SeparateLayout):
    """transformers' LlamaAttention, and Mistral's and Qwen2's of the same make (q_proj, k_proj, v_proj, o_proj; they
    read their head counts from q's and k's widths at every call). With grouped key/value heads (fewer key/value
    heads than query heads) a head here is a key/value head with the query heads that share it: its rows of k and v,
    its group's rows of q and columns of o, so every group keeps the query heads per key/value head its config says."""

    label = "LlamaAttention"
    names = ("q_proj", "k_proj", "v_proj", "o_proj")
    classes = ("LlamaAttention", "MistralAttention", "Qwen2Attention")  # by name: transformers is optional

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return type(module).__name__ in cls.classes

    @classmethod
    def heads(cls, module: nn.Module) -> int:
        return module.k_proj.out_features // cls.head_dim(module)

    @classmethod
    def group(cls, module: nn.Module) -> int:
        """Query heads per key/value head."""
        return module.q_proj.out_features // module.k_proj.out_features

    @classmethod
    def owners(cls, module: nn.Module) -> dict[str, torch.Tensor]:
        heads, width = cls.heads(module), cls.head_dim(module)
        kv_rows, q_rows = head_rows(heads, width), head_rows(heads, width * cls.group(module))
        owners = {}
        for name, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
            layer = getattr(module, name)
            owners[f"{name}.weight"] = rows[:, None].expand(layer.weight.shape)
            if layer.bias is not None:
                owners[f"{name}.bias"] = rows
        owners["o_proj.weight"] = q_rows[None, :].expand(module.o_proj.weight.shape)
        return owners

    @classmethod
    def cut(cls, module: nn.Module, rows: torch.Tensor) -> nn.Module:
        # `rows` are the kept heads' rows of k and v; q and o keep each kept head's group of query heads.
        width, group = cls.head_dim(module), cls.group(module)
        kept = rows[::width] // width
        q_rows = (kept[:, None] * width * group + torch.arange(width * group, device=rows.device)).flatten()
        _narrow_linear(module.q_proj, q_rows, dim=0)
        _narrow_linear(module.k_proj, rows, dim=0)
        _narrow_linear(module.v_proj, rows, dim=0)
        _narrow_linear(module.o_proj, q_rows, dim=1)
        return module


class MultiheadLayout(HeadLayout):
    """torch's nn.MultiheadAttention: q|k|v rows packed in in_proj_weight (3·E, E) and in_proj_bias, heads read as
    num_heads × head_dim = E, so its cut is a PrunedMultiheadAttention of the kept heads."""

    label = "nn.MultiheadAttention"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.MultiheadAttention)

    @classmethod
    def heads(cls, module: nn.Module) -> int:
        return int(module.num_heads)

    @classmethod
    def refusal(cls, module: nn.Module) -> str | None:
        if not module._qkv_same_embed_dim:
            return "projects keys or values from another width (kdim/vdim); only packed q/k/v (in_proj_weight) is cut"
        if module.bias_k is not None or module.add_zero_attn:
            return "adds a key/value of its own (add_bias_kv or add_zero_attn), which no head's mask covers"
        return None

    @classmethod
    def owners(cls, module: nn.Module) -> dict[str, torch.Tensor]:
        rows = head_rows(cls.heads(module), cls.head_dim(module))
        packed = rows.repeat(3)
        owners = {"in_proj_weight": packed[:, None].expand(module.in_proj_weight.shape)}
        if module.in_proj_bias is not None:
            owners["in_proj_bias"] = packed
        owners["out_proj.weight"] = rows[None, :].expand(module.out_proj.weight.shape)
        return owners

    @classmethod
    def cut(cls, module: nn.Module, rows: torch.Tensor) -> nn.Module:
        embed = module.embed_dim
        weight = module.in_proj_weight.detach()
        rows = rows.to(weight.device)
        bias = None if module.in_proj_bias is None else module.in_proj_bias.detach()
        q, k, v = (_linear(weight[i * embed:(i + 1) * embed][rows],
                           None if bias is None else bias[i * embed:(i + 1) * embed][rows]) for i in range(3))
        out = module.out_proj
        proj = _linear(out.weight.detach()[:, rows], None if out.bias is None else out.bias.detach())
        small = PrunedMultiheadAttention(q, k, v, proj, cls.head_dim(module), module.dropout, module.batch_first)
        return small.train(module.training)


class GPT2Layout(HeadLayout):
    """transformers' GPT2Attention: c_attn a Conv1D whose weight is transposed (E, 3·E), q|k|v column blocks, and
    c_proj a Conv1D (E, E) whose rows are the heads' outputs; it splits c_attn's output at split_size."""

    label = "GPT2Attention"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return type(module).__name__ == "GPT2Attention"  # by name: transformers is optional

    @classmethod
    def heads(cls, module: nn.Module) -> int:
        return module.c_proj.weight.shape[0] // cls.head_dim(module)

    @classmethod
    def refusal(cls, module: nn.Module) -> str | None:
        if getattr(module, "is_cross_attention", False):
            return "is cross-attention (q_attn), which strategy=heads does not cut"
        return None

    @classmethod
    def owners(cls, module: nn.Module) -> dict[str, torch.Tensor]:
        rows = head_rows(cls.heads(module), cls.head_dim(module))
        packed = rows.repeat(3)
        return {"c_attn.weight": packed[None, :].expand(module.c_attn.weight.shape), "c_attn.bias": packed,
                "c_proj.weight": rows[:, None].expand(module.c_proj.weight.shape)}

    @classmethod
    def cut(cls, module: nn.Module, rows: torch.Tensor) -> nn.Module:
        split, rows = module.split_size, rows.to(module.c_attn.weight.device)
        packed = torch.cat([rows + i * split for i in range(3)])
        attn, proj = module.c_attn, module.c_proj
        _replace(attn, "weight", attn.weight.detach()[:, packed])
        _replace(attn, "bias", attn.bias.detach()[packed])
        attn.nf = len(packed)
        _replace(proj, "weight", proj.weight.detach()[rows])
        proj.nx = len(rows)
        # Its forward splits q|k|v at split_size and infers the head count (-1 in its view); num_heads for readers.
        module.split_size, module.num_heads = len(rows), len(rows) // cls.head_dim(module)
        return module


KINDS: tuple[type[HeadLayout], ...] = (GPTLayout, PrunedMHALayout, MultiheadLayout, GPT2Layout, LlamaLayout)


def kind_of(module: nn.Module) -> type[HeadLayout] | None:
    return next((kind for kind in KINDS if kind.matches(module)), None)


def _replace(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """A parameter of `module` swapped for `value` (a copy); nothing else of the module changes."""
    old = getattr(module, name)
    setattr(module, name, nn.Parameter(value.clone(), requires_grad=old.requires_grad))


def _narrow_linear(layer: nn.Linear, index: torch.Tensor, dim: int) -> None:
    """`layer` keeping `index` of its outputs (dim 0) or inputs (dim 1), in place (its class stays; no random
    initialisation runs); the bias follows only the outputs."""
    _replace(layer, "weight", layer.weight.detach().index_select(dim, index.to(layer.weight.device)))
    if layer.bias is not None and dim == 0:
        _replace(layer, "bias", layer.bias.detach().index_select(0, index.to(layer.bias.device)))
    layer.out_features, layer.in_features = layer.weight.shape


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An nn.Linear holding copies of `weight` and `bias` (built on the meta device: no random initialisation)."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    layer.weight = nn.Parameter(weight.clone())
    if bias is not None:
        layer.bias = nn.Parameter(bias.clone())
    return layer
