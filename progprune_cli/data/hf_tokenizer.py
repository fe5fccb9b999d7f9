"""`dataset.tokenizer=hf`: a Hugging Face folder's own tokenizer (its tokenizer.json, read by the `tokenizers` library
that transformers uses): plain JSON, so no code of the folder runs, nothing is unpickled and nothing is downloaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from progprune_cli.errors import UserError, described, first_line

TOKENIZER = "tokenizer.json"  # what every fast tokenizer's save_pretrained writes, the whole tokenizer in one file
TOKENIZER_CONFIG = "tokenizer_config.json"
CONFIG_LIMIT = 16 * 1024 * 1024  # a tokenizer_config.json is a few KB


def tokenizer_folder(path: Optional[str]) -> Path:
    """`dataset.tokenizer_path` (by default model.path) as a folder holding tokenizer.json, or a one-line error."""
    if path is None:
        raise UserError("dataset.tokenizer: hf reads a Hugging Face folder's tokenizer and none is given; run with "
                        "model=hf model.path=DIR (its tokenizer is used) or set dataset.tokenizer_path=DIR")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"dataset.tokenizer_path: {path}: no such folder (a Hugging Face folder holding "
                        f"{TOKENIZER})")
    folder = folder.resolve()
    if not (folder / TOKENIZER).is_file():
        raise UserError(f"dataset.tokenizer_path: {folder} has no {TOKENIZER}, the file dataset.tokenizer=hf reads "
                        f"(vocab.json, merges.txt or tokenizer.model alone are not read): write it with "
                        "AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)")
    _refuse_own_code(folder / TOKENIZER_CONFIG)
    return folder


def _refuse_own_code(path: Path) -> None:
    """A tokenizer_config.json naming the folder's own tokenizer class (auto_map): its tokenizer.json may not be
    what that code does, and progprune never runs it."""
    if not path.is_file():
        return
    try:
        if path.stat().st_size > CONFIG_LIMIT:
            raise ValueError(f"larger than {CONFIG_LIMIT // 1024 // 1024} MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"dataset.tokenizer_path: {path}: not a readable {TOKENIZER_CONFIG} "
                        f"({described(error)})") from None
    if isinstance(data, dict) and "auto_map" in data:
        raise UserError(f"dataset.tokenizer_path: {path} names the folder's own code (auto_map); progprune never "
                        "runs a model folder's code (trust_remote_code): use a tokenizer transformers itself "
                        "implements")


def load(folder: Path) -> Any:
    """The `tokenizers.Tokenizer` of `folder`'s tokenizer.json."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserError("dataset.tokenizer=hf needs the tokenizers package: pip install 'progprune[models]' (in a "
                        "checkout: pip install -e '.[models]')") from None
    try:
        return Tokenizer.from_file(str(folder / TOKENIZER))
    except Exception as error:  # the Rust side raises a bare Exception for any file it cannot parse
        raise UserError(f"dataset.tokenizer_path: {folder / TOKENIZER}: not a tokenizer the tokenizers library "
                        f"reads ({first_line(error)})") from None


def identity(folder: Path) -> str:
    """What decides the ids besides the text: tokenizer.json's content and the library's version (cache key)."""
    import tokenizers

    digest = hashlib.sha256((folder / TOKENIZER).read_bytes()).hexdigest()
    return f"tokenizers {tokenizers.__version__}, {TOKENIZER} sha256:{digest}"


def encode(tokenizer: Any, text: str) -> list[int]:
    """The ids of `text` alone: no special tokens added (a corpus is one stream, not a prompt)."""
    return tokenizer.encode(text, add_special_tokens=False).ids


def symbols(tokenizer: Any) -> tuple[str, ...]:
    """Token i's string for every id below the vocabulary size (added tokens included; "" for an unused id)."""
    size = max(tokenizer.get_vocab_size(with_added_tokens=True),
               max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1) + 1)
    return tuple(tokenizer.id_to_token(i) or "" for i in range(size))
