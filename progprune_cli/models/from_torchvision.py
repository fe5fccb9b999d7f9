"""`model=torchvision model.arch=NAME`: any classification model of torchvision.models, built for the data's classes
and input channels; `model.weights` DEFAULT or a weights name is read from the local torch hub cache, never
downloaded (torchvision is imported only when such a model is built: it costs every run ~2.4 s)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.models.base import MODELS
from progprune_cli.models.weights import (Ends, SourcedConfig, given_file, read_state, rebuilt_conv, new_head,
                                          replace_module)

LIST = "torchvision.models.list_models(module=torchvision.models)"
CHANNELS = 3  # every torchvision classification model takes RGB
# googlenet and inception_v3 add auxiliary classifiers whose outputs make training return a tuple; progprune trains
# on the final logits, so they are left out (as torchvision's own builder does for pretrained googlenet), and their
# initialisation is torchvision's documented one (its default is about to change, and it warns).
AUXILIARY = {"googlenet": ("aux1", "aux2"), "inception_v3": ("AuxLogits",)}


@dataclass
class TorchvisionConfig(SourcedConfig):
    arch: Optional[str] = MISSING

    @property
    def source(self) -> str:
        return f"torchvision:{self.arch}"

    def code_identity(self) -> str | None:
        import torchvision

        return f"torchvision {torchvision.__version__}"

    def weights_enum(self) -> Any:
        """The torchvision weights `weights` names (DEFAULT, a member name, or Enum.MEMBER), or None: a path."""
        import torchvision.models as tvm

        enum = tvm.get_model_weights(torchvision_arch(self))
        name = str(self.weights).removeprefix(f"{enum.__name__}.")
        return enum.DEFAULT if name == "DEFAULT" else enum.__members__.get(name)

    def weights_file(self) -> Path:
        weights = self.weights_enum()
        if weights is None:
            if not Path(str(self.weights)).expanduser().exists():
                import torchvision.models as tvm

                names = ", ".join(["DEFAULT", *(w.name for w in tvm.get_model_weights(str(self.arch)))])
                raise UserError(f"model.weights: {self.weights}: no such file, nor a weights name of torchvision's "
                                f"{self.arch} ({names})")
            return given_file(str(self.weights))
        return cached_file(weights, str(self.weights))

    def preloaded(self) -> tuple[int, int] | None:
        weights = self.weights_enum() if self.weights is not None else None
        return None if weights is None else (len(weights.meta["categories"]), CHANNELS)

    def ends(self, model: nn.Module) -> Ends:
        return torchvision_ends(model)


def torchvision_arch(cfg: TorchvisionConfig) -> str:
    """`model.arch`, checked against torchvision's classification models."""
    import torchvision.models as tvm

    known = tvm.list_models(module=tvm)
    if cfg.arch is None:
        raise UserError(f"model.arch: missing; choose a torchvision classification model, e.g. model.arch=resnet18 "
                        f"(all: {LIST})")
    if cfg.arch not in known:
        close = difflib.get_close_matches(cfg.arch, known, n=4, cutoff=0.5)
        hint = f"close: {', '.join(close)}; " if close else ""
        raise UserError(f"model.arch={cfg.arch}: not a torchvision classification model ({hint}all: {LIST})")
    return cfg.arch


def cached_file(weights: Any, given: str) -> Path:
    """Where torch.hub keeps `weights` (TORCH_HOME/hub/checkpoints/<file of its url>), or a one-line error saying
    what to put where: progprune never downloads."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    name = Path(urlparse(weights.url).path).name
    if not (folder / name).is_file():
        raise UserError(f"model.weights={given}: {weights} is the file {name}, which is not in the torch hub cache, "
                        f"and progprune does not download: put {name} (from {weights.url}) in {folder}")
    return given_file(str(folder / name))


@contextmanager
def read_offline(weights: Any, path: Path) -> Iterator[None]:
    """torchvision's builder asks the weights for their state dict, and torch.hub would download a missing file and
    unpickle it without weights_only; here the builder gets `path` read as progprune reads every file of tensors."""
    enum = type(weights)
    own = enum.__dict__.get("get_state_dict")
    enum.get_state_dict = lambda self, *args, **kwargs: read_state(path)
    try:
        yield
    finally:
        if own is None:
            del enum.get_state_dict
        else:
            enum.get_state_dict = own


def torchvision_ends(model: nn.Module) -> Ends:
    """In every classification model of torchvision the classifier is the last Linear or Conv2d registered, and the
    first conv registered reads the image (tests/test_user_models.py checks both for every arch torchvision can build
    on the meta device)."""
    layers = [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return Ends(head=layers[-1] if layers else None, stem=convs[0] if convs else None)


@MODELS.register("torchvision", TorchvisionConfig)
def build(cfg: TorchvisionConfig, info: DataInfo) -> nn.Module:
    import torchvision.models as tvm

    arch = torchvision_arch(cfg)
    builder = tvm.get_model_builder(arch)
    weights = cfg.weights_enum() if cfg.weights is not None else None
    if weights is None:
        init = {"aux_logits": False, "init_weights": True} if arch in AUXILIARY else {}
        model = builder(weights=None, num_classes=info.num_classes, **init)
    else:
        with read_offline(weights, cached_file(weights, str(cfg.weights))):
            model = builder(weights=weights)  # torchvision's own builder: the architecture these weights need
        if arch in AUXILIARY:
            model.aux_logits = False
            for name in AUXILIARY[arch]:
                setattr(model, name, None)
    found = torchvision_ends(model)
    if weights is not None and len(weights.meta["categories"]) != info.num_classes:
        assert found.head is not None
        replace_module(model, found.head, new_head(model.get_submodule(found.head), info.num_classes))
    if info.channels != CHANNELS and found.stem is not None:
        stem = model.get_submodule(found.stem)
        assert isinstance(stem, nn.Conv2d)
        replace_module(model, found.stem, rebuilt_conv(stem, info.channels, keep=weights is not None))
    return model
