"""`model=hf model.path=DIR`: a local Hugging Face causal language model (the optional `models` extra), its weights
read from the folder's model.safetensors; never downloaded, never the folder's own code (trust_remote_code)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError, described
from progprune_cli.models.base import MODELS
from progprune_cli.models.transformer_checks import needs_tokens
from progprune_cli.models.weights import Fitted, SourcedConfig, sha256_of

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CONFIG_LIMIT = 16 * 1024 * 1024  # a config.json is a few KB; a bigger one is not a model's config
# The config.json keys different architectures use for the longest sequence they take.
POSITION_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "seq_length")


@dataclass
class HFConfig(SourcedConfig):
    # The dense cache knows the folder by its files' content (code_identity, the weights' sha256), not its path.
    KEYED_BY_CONTENT: ClassVar[tuple[str, ...]] = ("path",)

    path: str = MISSING

    @property
    def source(self) -> str:
        return f"hf:{Path(self.path).expanduser().resolve()}"  # said in messages too: never raises

    def code_identity(self) -> str | None:
        """transformers' version and config.json's content: with the weights, everything that decides the model."""
        config = model_folder(self) / CONFIG
        return f"transformers {transformers_module().__version__}, {CONFIG} sha256:{_file_sha256(config)}"

    def own_weights(self) -> Fitted | None:
        """The folder's model.safetensors: what the run starts from (results.json run.weights)."""
        path = weights_file(model_folder(self))
        return Fitted(str(path), sha256_of(path))


class CausalLM(nn.Module):
    """A transformers causal LM as progprune's models are: token ids (batch, block) → logits (batch, block, vocab),
    the vocabulary cut to the data's (ids beyond it never occur in the data, so their logits are never wanted)."""

    def __init__(self, model: nn.Module, vocab: int) -> None:
        super().__init__()
        self.model = model
        self.vocab = vocab

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # No key/value cache: every call sees whole windows, and a cache would only cost memory in training.
        return self.model(input_ids=ids, use_cache=False).logits[..., : self.vocab]


def transformers_module() -> ModuleType:
    """transformers, or a one-line error naming the extra that installs it."""
    try:
        import transformers
    except ImportError:
        raise UserError("model=hf needs the transformers package: pip install 'progprune[models]' (in a checkout: "
                        "pip install -e '.[models]')") from None
    # Its progress bars and load reports on stderr would bury progprune's one-line errors, which say the same.
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return transformers


def model_folder(cfg: HFConfig) -> Path:
    """`model.path` as an existing folder (relative: to the folder progprune was started in), or a one-line error."""
    folder = Path(cfg.path).expanduser()
    if not folder.exists():
        raise UserError(f"model.path: {cfg.path}: no such folder")
    if not folder.is_dir():
        raise UserError(f"model.path: {cfg.path}: not a folder (a Hugging Face model folder holds config.json and "
                        "model.safetensors)")
    return folder.resolve()


def folder_config(folder: Path) -> dict[str, Any]:
    """config.json's keys; a folder without one, or one naming its own code (auto_map), is a one-line error."""
    path = folder / CONFIG
    if not path.is_file():
        raise UserError(f"model.path: {folder} has no {CONFIG} (not a Hugging Face model folder)")
    try:
        if path.stat().st_size > CONFIG_LIMIT:
            raise ValueError(f"larger than {CONFIG_LIMIT // 1024 // 1024} MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"model.path: {path}: not a readable {CONFIG} ({described(error)})") from None
    if not isinstance(data, dict):
        raise UserError(f"model.path: {path}: expected a JSON object, found {type(data).__name__}")
    if "auto_map" in data:
        raise UserError(f"model.path: {path} names the folder's own code (auto_map); progprune never runs a model "
                        "folder's code (trust_remote_code): use a model transformers itself implements")
    return data


def weights_file(folder: Path) -> Path:
    """The folder's model.safetensors; a folder with only pickled or sharded weights is a one-line error."""
    path = folder / WEIGHTS
    if path.is_file():
        return path
    if (folder / "pytorch_model.bin").exists():
        raise UserError(f"model.path: {folder} has pytorch_model.bin but no {WEIGHTS}; progprune reads safetensors "
                        "only (a .bin is a pickle): save it with save_pretrained(DIR, safe_serialization=True)")
    if (folder / f"{WEIGHTS}.index.json").exists():
        raise UserError(f"model.path: {folder} holds sharded weights ({WEIGHTS}.index.json); progprune reads one "
                        f"{WEIGHTS}: save it with save_pretrained(DIR, max_shard_size='100GB')")
    raise UserError(f"model.path: {folder} has no {WEIGHTS}")


def check_fits(folder: Path, config: Any, keys: dict[str, Any], info: DataInfo) -> None:
    """The data's vocabulary and block must fit the model's embeddings."""
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and info.vocab > vocab and info.tokenizer_folder:
        raise UserError(f"dataset.tokenizer: hf: the tokenizer at {info.tokenizer_folder} has {info.vocab} tokens, "
                        f"more than the {vocab} of the model at {folder} ({CONFIG} vocab_size); give "
                        f"dataset.tokenizer_path a folder whose tokenizer has at most {vocab} (or dataset.tokenizer="
                        "byte: 256)")
    if isinstance(vocab, int) and info.vocab > vocab:
        raise UserError(f"dataset.tokenizer: the data's vocabulary has {info.vocab} tokens, more than the "
                        f"{vocab} of the model at {folder} ({CONFIG} vocab_size); choose a tokenizer "
                        f"with at most {vocab} (byte: 256)")
    key = next((k for k in POSITION_KEYS if isinstance(keys.get(k), int)), None)
    if key is not None and info.width > keys[key]:
        raise UserError(f"dataset.block_size: {info.width} is longer than the model at {folder} takes ({keys[key]} "
                        f"positions, {CONFIG} {key}); set dataset.block_size <= {keys[key]}")


def load_causal_lm(folder: Path, info: DataInfo) -> nn.Module:
    """The folder's causal LM in float32 with its safetensors weights, checked to fit the data; read with
    local_files_only and trust_remote_code=False, so nothing is downloaded and no code of the folder runs."""
    transformers = transformers_module()
    keys = folder_config(folder)  # auto_map refused before transformers reads anything
    weights_file(folder)
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise UserError(f"model.path: {folder}/{CONFIG}: transformers cannot read it ({described(error)})") from None
    check_fits(folder, config, keys, info)
    try:
        model, loading = transformers.AutoModelForCausalLM.from_pretrained(
            folder, config=config, local_files_only=True, trust_remote_code=False, use_safetensors=True,
            dtype=torch.float32, output_loading_info=True)
    except RuntimeError:  # what transformers raises for tensors of other shapes than the config's
        raise UserError(f"model.path: {folder}/{WEIGHTS} does not fit its {CONFIG}: shapes differ: "
                        f"{shapes_differ(folder, config)}") from None
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise UserError(f"model.path: {folder}: transformers cannot load it as a causal language model "
                        f"({described(error)})") from None
    wrong = {k: sorted(v) for k, v in loading.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys")
             and v}
    if wrong:
        said = "; ".join(f"{k.replace('_', ' ')} {', '.join(map(str, v[:3]))}" + (f" (+{len(v) - 3} more)"
                                                                                  if len(v) > 3 else "")
                         for k, v in wrong.items())
        raise UserError(f"model.path: {folder}/{WEIGHTS} does not fit its {CONFIG}: {said}")
    return model


def shapes_differ(folder: Path, config: Any) -> str:
    """The first tensors whose shape in the weights file is not the one the config builds (no memory: meta)."""
    from safetensors import safe_open

    with torch.device("meta"):
        own = transformers_module().AutoModelForCausalLM.from_config(config).state_dict()
    with safe_open(str(folder / WEIGHTS), "pt") as handle:
        shapes = {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
    wrong = [f"{k} {v} in the file vs {list(own[k].shape)} in the config" for k, v in shapes.items()
             if k in own and v != list(own[k].shape)]
    return ", ".join(wrong[:3]) + (f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else "")


@MODELS.register("hf", HFConfig)
def build(cfg: HFConfig, info: DataInfo) -> nn.Module:
    needs_tokens("hf", info)
    folder = model_folder(cfg)
    return CausalLM(load_causal_lm(folder, info), info.vocab)


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()
