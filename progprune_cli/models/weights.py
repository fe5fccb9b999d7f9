"""`model.weights`: a state dict read without running code (.safetensors, or a torch file of tensors), fitted to the
data (a classifier of another size replaced, a first conv of other input channels adapted, where the model says
which modules those are) and loaded into a freshly built model. Anything else that differs is a one-line error."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from progprune_cli.checkpoints import CodeRefused, NotACheckpoint, load_checkpoint
from progprune_cli.config import ModelConfig
from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError, described

# A training checkpoint may hold the state dict under one of these (progprune's own checkpoints use "model").
WRAPPERS = ("state_dict", "model")
SHOWN = 3  # keys an error names before "+N more"


@dataclass(frozen=True)
class Ends:
    """A model's classifier and first convolution, by module name; None where unknown, and then weights must fit
    that end exactly."""

    head: str | None = None
    stem: str | None = None


@dataclass(frozen=True)
class Fitted:
    """The weights a run's model started from: the file, its SHA-256, and what was changed to fit the data."""

    file: str
    sha256: str
    head_replaced: bool = False
    adapted: tuple[str, ...] = ()


@dataclass
class SourcedConfig(ModelConfig):
    """The schema of a model built by code outside progprune's registry (torchvision, timm, a user's class): where
    it comes from, where its weights file is, and which modules are its classifier and first conv."""

    @property
    def source(self) -> str:
        return f"progprune:{self.name}"

    def code_identity(self) -> str | None:
        """What besides the config decides the architecture (a library's version, the user module's hash)."""
        return None

    def weights_file(self) -> Path:
        """`weights` as a file (a name a library resolves in its local cache, else a path)."""
        return given_file(str(self.weights))

    def preloaded(self) -> tuple[int, int] | None:
        """(classes, input channels) of weights the builder already loaded (a torchvision weights name), else
        None: load_weights reads the file."""
        return None

    def ends(self, model: nn.Module) -> Ends:
        return Ends()

    def own_weights(self) -> Fitted | None:
        """The weights the builder reads without `weights` being set (a Hugging Face folder's), else None."""
        return None


def source_of(cfg: ModelConfig) -> str:
    """`progprune:NAME` for a model of progprune's registry, `torchvision:ARCH`, `timm:ARCH`, `custom:MODULE.CLASS`."""
    return cfg.source if isinstance(cfg, SourcedConfig) else f"progprune:{cfg.name}"


def code_identity(cfg: ModelConfig) -> str | None:
    return cfg.code_identity() if isinstance(cfg, SourcedConfig) else None


def given_file(value: str) -> Path:
    """A weights path as given (relative: to the folder progprune was started in), or a one-line error."""
    path = Path(value).expanduser()
    if not path.exists():
        raise UserError(f"model.weights: {value}: no such file")
    if not path.is_file():
        raise UserError(f"model.weights: {value}: not a file")
    # The user named this file (a link they made is theirs to follow); opened below without following any other.
    return path.resolve()


def load_weights(model: nn.Module, cfg: ModelConfig, info: DataInfo) -> Fitted | None:
    """Load `model.weights` into `model` (built for `info`), fitted to the data; what was loaded, or None when the
    config gives no weights. A file that does not fit is a one-line UserError naming the first keys."""
    sourced = isinstance(cfg, SourcedConfig)
    if cfg.weights is None:
        return cfg.own_weights() if sourced else None
    path = cfg.weights_file() if sourced else given_file(cfg.weights)
    ends = cfg.ends(model) if sourced else Ends()
    preloaded = cfg.preloaded() if sourced else None
    if preloaded is not None:  # the builder loaded them (and fitted the ends): only say what it changed
        notes, replaced = fit_notes(model, ends, *preloaded, info)
    else:
        notes, replaced = load_fitted(model, read_state(path), ends, source_of(cfg), path, info)
    return Fitted(str(path), sha256_of(path), replaced, notes)


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in `path`: .safetensors, else a torch file read with weights_only (a pickle that would run
    code is refused); a dict holding it under "state_dict" or "model" (a training checkpoint) is unwrapped."""
    if path.suffix == ".safetensors":
        try:  # here: only runs given such a file import it
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError:
            raise UserError(f"model.weights: {path}: reading .safetensors needs the safetensors package: pip install "
                            "'progprune[models]' (in a checkout: pip install -e '.[models]')") from None

        try:
            data: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise UserError(f"model.weights: {path}: not a readable safetensors file ({described(error)})") from None
    else:
        try:
            data = load_checkpoint(path)
        except CodeRefused:
            raise UserError(f"model.weights: {path}: refused: it holds pickled objects that would run code when "
                            "read; save the state dict alone (torch.save(model.state_dict(), FILE)) or as "
                            ".safetensors") from None
        except NotACheckpoint as error:
            raise UserError(f"model.weights: {path}: not a readable torch or safetensors file ({error.reason})") \
                from None
    return _unwrapped(data, path)


def _unwrapped(data: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(data, dict) and not all(isinstance(v, torch.Tensor) for v in data.values()):
        data = next((data[key] for key in WRAPPERS if isinstance(data.get(key), dict)), data)
    if not isinstance(data, dict) or not data:
        raise UserError(f"model.weights: {path}: holds no state dict (a dict of tensors, or one under "
                        f"{' or '.join(repr(k) for k in WRAPPERS)})")
    for key, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise UserError(f"model.weights: {path}: entry {key!r} is {type(value).__name__}, not a tensor")
    return data


def load_fitted(model: nn.Module, state: dict[str, torch.Tensor], ends: Ends, source: str, path: Path,
                info: DataInfo) -> tuple[tuple[str, ...], bool]:
    """Load `state` into `model`: a classifier (`ends.head`) of another number of classes keeps the model's fresh
    one, a first conv (`ends.stem`) of other input channels gets the file's weights adapted; any other difference
    is a UserError. What was changed, and whether the head was replaced."""
    own = model.state_dict()
    state = dict(state)
    head_weight, stem_weight = f"{ends.head}.weight", f"{ends.stem}.weight"
    classes = channels = None
    if ends.head is not None and _differs_in(state, own, head_weight, 0):
        classes = int(state[head_weight].shape[0])
        for key in own:
            if key.startswith(f"{ends.head}.") and key in state:
                state[key] = own[key]  # the data's classes: the freshly initialised (seeded) head stays
    if ends.stem is not None and _differs_in(state, own, stem_weight, 1):
        channels = int(state[stem_weight].shape[1])
        state[stem_weight] = adapted_stem_weight(state[stem_weight], int(own[stem_weight].shape[1]))
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    where = f"model.weights: {path} does not fit {source}"
    if wrong:
        raise UserError(f"{where}: shapes differ: " + _listed([f"{k} {_shape(state[k])} in the file vs "
                                                                 f"{_shape(own[k])} in the model" for k in wrong]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        said = [f"missing keys {_listed(missing)}" if missing else "",
                f"unexpected keys {_listed(unexpected)}" if unexpected else ""]
        raise UserError(f"{where}: {'; '.join(s for s in said if s)}")
    return fit_notes(model, ends, classes, channels, info)


def fit_notes(model: nn.Module, ends: Ends, classes: int | None, channels: int | None,
              info: DataInfo) -> tuple[tuple[str, ...], bool]:
    """What fitting weights of `classes` outputs and `channels` inputs (None: the data's) to the data changed."""
    notes = []
    replaced = classes is not None and classes != info.num_classes
    if replaced:
        notes.append(f"{ends.head}: {classes} → {info.num_classes} outputs (head replaced, initialised at random)")
    if channels is not None and channels != info.channels:
        notes.append(f"{ends.stem}: {channels} → {info.channels} input channels (first conv adapted from the "
                     "weights)")
    return tuple(notes), replaced


def _differs_in(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], key: str, dim: int) -> bool:
    """Whether `key` is in both with the same shape but for dimension `dim`."""
    if key not in state or key not in own or state[key].dim() != own[key].dim():
        return False
    a, b = list(state[key].shape), list(own[key].shape)
    return a[dim] != b[dim] and a[:dim] + a[dim + 1:] == b[:dim] + b[dim + 1:]


def adapted_stem_weight(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """A first conv's weight for `channels` inputs, as timm's adapt_input_conv makes it: summed over the input
    channels for one (a grey image gets what its colour copies would), else cycled and rescaled so the response to
    a constant image keeps its size."""
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    have = weight.shape[1]
    return weight.repeat(1, -(-channels // have), 1, 1)[:, :channels] * (have / channels)


def rebuilt_conv(old: nn.Conv2d, channels: int, keep: bool) -> nn.Conv2d:
    """`old` for `channels` inputs, everything else alike; its weight adapted from `old`'s (`keep`: pretrained),
    else initialised as torchvision initialises convolutions."""
    if old.groups != 1:
        raise UserError(f"model: the first conv is grouped ({old.groups} groups); it cannot be rebuilt for "
                        f"{channels} input channels")
    conv = nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, old.padding,  # type: ignore[arg-type]
                     old.dilation, 1, old.bias is not None, old.padding_mode)
    with torch.no_grad():
        if keep:
            conv.weight.copy_(adapted_stem_weight(old.weight, channels))
        else:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if old.bias is not None:
            conv.bias.copy_(old.bias)  # type: ignore[union-attr]
    return conv


def new_head(old: nn.Module, classes: int) -> nn.Module:
    """A fresh classifier like `old` (Linear, or a 1×1 Conv2d as squeezenet's) with `classes` outputs."""
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, classes, bias=old.bias is not None)
    if isinstance(old, nn.Conv2d):
        return nn.Conv2d(old.in_channels, classes, old.kernel_size, old.stride, old.padding,  # type: ignore[arg-type]
                         old.dilation, old.groups, old.bias is not None)
    raise UserError(f"model: its classifier is a {type(old).__name__}; only a Linear or Conv2d can be replaced")


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


@functools.lru_cache(maxsize=8)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    """The file's SHA-256 (once per version of the file in a process: a run asks for it at every model build)."""
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


def _shape(tensor: torch.Tensor) -> str:
    return "[" + ", ".join(str(d) for d in tensor.shape) + "]"


def _listed(items: list[str]) -> str:
    more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more
