"""`progprune export RUN_DIR --format hf`: a model=hf run's model as a new Hugging Face folder (config.json,
model.safetensors, progprune.json), written only once `from_pretrained` reloads it with the run's logits."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from progprune_cli import __version__
from progprune_cli.errors import UserError
from progprune_cli.export.run import RunFolder, check_out_writable
from progprune_cli.results.status import config_hash

SIDECAR = "progprune.json"
TOLERANCE = 1e-5  # max |logit difference| between the run's model and the reloaded folder


def require_hf_run(run: RunFolder) -> None:
    """Only a model=hf run has a transformers model to write."""
    if run.cfg.model.name != "hf":
        raise UserError(f"--format hf: needs a model=hf run; {run.path} ran model={run.cfg.model.name}")


# What a compacted model=hf run lost, by its strategy's granularity (the compacted checkpoint's): a config.json holds
# one head count (each n_embd / n_head wide) and one MLP width for every layer, so neither a cut that differs from
# layer to layer nor removed heads can be described; MLPs cut to the same width in every layer can (fit_mlp_width).
CUT = {"head": ("its attention heads were cut out (strategy=heads)", "its removed heads"),
       "channel": ("its MLP hidden neurons were cut out to widths that differ between layers (a channel strategy)",
                   "its removed neurons")}

# The config keys holding the one MLP hidden width of every layer: GPT-2's and Llama's (tested), OPT's. Whichever
# the config has is tried; the meta-device shape check decides.
WIDTH_KEYS = ("n_inner", "intermediate_size", "ffn_dim")


def hf_model(run: RunFolder, which: str, chosen: bool, described: bool) -> str:
    """`which`, or finetuned in place of a default compacted model that no config describes (`described` False:
    fit_mlp_width found no one width): the same weights with the cut parts masked to zero."""
    from progprune_cli.export.saved import read_checkpoint

    if which != "compacted" or described:
        return which
    cut, removed = CUT[read_checkpoint(run.checkpoint(which), which).get("granularity", "channel")]
    if chosen:
        raise UserError(f"--model compacted: {cut}, which no config.json describes; export --model finetuned (the "
                        f"same model, {removed} masked to zero)")
    return "finetuned"


def fit_mlp_width(inner: nn.Module) -> dict[str, int] | None:
    """The config change that describes a compacted transformers model, made to `inner.config`: its one MLP width
    key set to the width every layer kept ({} when nothing was cut), once a model built from that config (on the
    meta device: shapes, no memory) has exactly `inner`'s tensor shapes. None, and the config untouched, when no
    one width does (widths differ between layers, heads were cut, or the config has no such key)."""
    import copy

    shapes = _shapes(inner)
    original = _shapes(inner, inner.config)
    if original == shapes:
        return {}
    widths = {new for name, shape in shapes.items() for old, new in zip(original.get(name, ()), shape) if old != new}
    key = next((k for k in WIDTH_KEYS if hasattr(inner.config, k)), None)
    if key is None or len(widths) != 1:
        return None
    config = copy.deepcopy(inner.config)
    setattr(config, key, widths.pop())
    if _shapes(inner, config) != shapes:
        return None
    setattr(inner.config, key, getattr(config, key))
    return {key: getattr(config, key)}


def _shapes(model: nn.Module, config: Any = None) -> dict[str, tuple[int, ...]]:
    """Every state-dict tensor's shape: of `model`, or of a model of its class built from `config` on the meta
    device."""
    if config is not None:
        with torch.device("meta"):
            model = type(model)(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def out_folder(given: str | None, run: RunFolder, which: str) -> Path:
    """A new folder (or an empty one) to write; anything else there is refused now, never overwritten."""
    path = run.path / "export" / f"{which}-hf" if given is None else Path(given)
    if path.is_symlink() or path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"--out: {path} already exists{'' if path.is_dir() else ' (not a folder)'} and is not "
                        "empty; --format hf writes a new folder: choose another --out")
    check_out_writable(path)
    return path


def transformers_model(model: nn.Module, which: str) -> nn.Module:
    """The transformers model inside progprune's wrapper (models/hf.py CausalLM)."""
    inner = getattr(model, "model", None)
    if not hasattr(inner, "save_pretrained"):
        raise UserError(f"--format hf: the run's {which} model is not a transformers model (it was rebuilt as "
                        f"{type(model).__name__}); export it as onnx")
    return inner  # type: ignore[return-value]


def largest_diff(model: nn.Module, folder: Path, ids: torch.Tensor) -> float:
    """Max |logits of `model` − logits of the folder as AutoModelForCausalLM.from_pretrained loads it| on `ids`."""
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, trust_remote_code=False,
                                                    use_safetensors=True).eval()
    with torch.no_grad():
        return float((model(input_ids=ids).logits - reloaded(input_ids=ids).logits).abs().max())


def sparsity(model: nn.Module) -> dict[str, float | int]:
    """Zero entries among the model's parameters (each shared tensor, e.g. tied embeddings, counted once)."""
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return {"params": total, "nonzero": nonzero, "sparsity": 1.0 - nonzero / total if total else 0.0}


def describe(run: RunFolder, which: str, info: Any, model: nn.Module, checked: int, diff: float,
             config_changed: dict[str, int]) -> dict[str, Any]:
    from progprune_cli.models.weights import source_of

    dataset = run.cfg.dataset
    return {
        "format": "hf",
        "model": which,
        "source": source_of(run.cfg.model),
        "config_changed": config_changed,  # the keys set to describe a compacted model's widths
        **sparsity(model),
        "run_id": run.id,
        "config_hash": config_hash(run.config),
        "data": {"dataset": dataset.name, "tokenizer": getattr(dataset, "tokenizer", None), "vocab": info.vocab,
                 "block_size": info.width,
                 "note": f"the run used token ids below {info.vocab} only, and the logits of those"},
        "check": {"loader": "AutoModelForCausalLM.from_pretrained", "split": "test", "samples": checked,
                  "max_abs_diff": diff, "tolerance": TOLERANCE},
        "exported": dt.datetime.now().isoformat(timespec="seconds"),
        "versions": {"progprune": __version__, "torch": torch.__version__, **_versions()},
    }


def export_hf(run: RunFolder, which: str, model: nn.Module, info: Any, ids: torch.Tensor, out: Path,
              config_changed: dict[str, int]) -> float:
    """Write `model` (the run's `which`, wrapped; `config_changed` what fit_mlp_width set) to `out` through a
    temporary sibling folder renamed into place once its reload matches; the max |diff|. A mismatch leaves nothing
    behind."""
    import json

    inner = transformers_model(model, which).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        inner.save_pretrained(tmp, safe_serialization=True)
        copied = copy_tokenizer(run, tmp)
        diff = largest_diff(inner, tmp, ids)
        if not diff <= TOLERANCE:  # NaN too
            raise UserError(f"--format hf: the reloaded folder's logits differ from the run's {which} model by "
                            f"{diff:.3g} (> {TOLERANCE:g}) on {len(ids)} test windows; nothing written")
        side = {**describe(run, which, info, inner, len(ids), diff, config_changed), "tokenizer_files": copied}
        (tmp / SIDECAR).write_text(json.dumps(side, indent=1) + "\n", encoding="utf-8")
        if out.is_dir():
            out.rmdir()  # empty (checked before): rename needs the name free
        os.rename(tmp, out)
    except OSError as error:
        raise UserError(f"--out: cannot write {error.filename or out} ({error.strerror or error})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return diff


# What a fast tokenizer's save_pretrained writes: AutoTokenizer.from_pretrained(folder) loads the export with them.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def copy_tokenizer(run: RunFolder, folder: Path) -> list[str]:
    """A dataset.tokenizer=hf run's tokenizer files (those that are plain files, never a link) copied into `folder`,
    so the export is the model with the tokenizer it was trained and measured with; their names."""
    from progprune_cli.data.hf_tokenizer import tokenizer_folder

    if getattr(run.cfg.dataset, "tokenizer", None) != "hf":
        return []
    source = tokenizer_folder(run.cfg.dataset.tokenizer_path)
    copied = []
    for name in TOKENIZER_FILES:
        path = source / name
        if path.is_file() and not path.is_symlink():
            shutil.copyfile(path, folder / name)
            copied.append(name)
    return copied


def _versions() -> dict[str, str]:
    import safetensors
    import transformers

    return {"transformers": transformers.__version__, "safetensors": safetensors.__version__}
