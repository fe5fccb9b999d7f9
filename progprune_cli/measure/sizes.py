"""Checkpoint size on disk: plain torch.save, and a sparse encoding (bitmask of nonzeros + their values)."""

from __future__ import annotations

import io
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from progprune_cli.atomic import replace_atomically

FORMAT = "progprune-sparse-v1"


def save_dense(state_dict: dict[str, torch.Tensor], path: Path | str) -> None:
    """torch.save, written atomically: the baseline size every model is compared with."""
    replace_atomically(Path(path), lambda tmp: torch.save(state_dict, tmp))


def encode_tensor(tensor: torch.Tensor) -> dict:
    """A float tensor as shape + packed bitmask of stored entries + those entries (their dtype is the tensor's).
    Anything else is kept as-is (cloned, so a view does not drag its whole storage into the file)."""
    tensor = tensor.detach().cpu()
    if not tensor.is_floating_point():
        return {"raw": tensor.clone()}
    flat = tensor.reshape(-1)
    # signbit keeps -0.0 as a value, so the round trip is bit-exact, not merely equal.
    stored = (flat != 0) | torch.signbit(flat)
    mask = np.packbits(stored.numpy())
    return {"shape": list(tensor.shape), "mask": torch.from_numpy(mask), "values": flat[stored].clone()}


def decode_tensor(entry: dict) -> torch.Tensor:
    """The tensor `encode_tensor` encoded."""
    if "raw" in entry:
        return entry["raw"]
    values = entry["values"]
    numel = int(np.prod(entry["shape"], dtype=np.int64))
    stored = torch.from_numpy(np.unpackbits(entry["mask"].numpy(), count=numel).astype(bool))
    flat = torch.zeros(numel, dtype=values.dtype)
    flat[stored] = values
    return flat.reshape(entry["shape"])


def save_sparse(state_dict: dict[str, torch.Tensor], path: Path | str) -> None:
    """Every tensor encoded by `encode_tensor`, the whole payload zlib-compressed, written atomically."""
    payload = {
        "format": FORMAT,
        "tensors": {name: encode_tensor(tensor) for name, tensor in state_dict.items()},
        # load_state_dict reads per-module versions (e.g. BatchNorm) from here.
        "metadata": getattr(state_dict, "_metadata", None),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = zlib.compress(buffer.getvalue())
    replace_atomically(Path(path), lambda tmp: tmp.write_bytes(data))


def load_sparse(path: Path | str) -> OrderedDict[str, torch.Tensor]:
    """The state dict `save_sparse` wrote: same keys, order, dtypes, shapes and values, on CPU."""
    payload = torch.load(io.BytesIO(zlib.decompress(Path(path).read_bytes())), weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file")
    # OrderedDict, like Module.state_dict(): it is the type that can carry `_metadata`.
    state_dict = OrderedDict((name, decode_tensor(entry)) for name, entry in payload["tensors"].items())
    if payload["metadata"] is not None:
        state_dict._metadata = payload["metadata"]
    return state_dict


def file_size(path: Path | str) -> int:
    """Bytes on disk."""
    return Path(path).stat().st_size
