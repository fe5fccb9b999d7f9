"""Text for language models: a .txt file or a folder of them (default: Python's own documentation topics), as tokens.

The text is cut into train/val/test by fraction, contiguously and in that order (a window never straddles two
splits), and each split into consecutive windows of `block_size` tokens whose targets are the same window shifted by
one token. The training windows are shuffled by the run's seeded batches, so a text run resumes like any other.
Tokenizers: `char`, `byte`, or `hf`, a Hugging Face folder's own (data/hf_tokenizer.py; the folder is
`dataset.tokenizer_path`, which conf/dataset/text.yaml sets to model.path, so a model=hf run needs no second path).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

import torch
from omegaconf import MISSING
from torch.utils.data import TensorDataset

from progprune_cli.config import DatasetConfig
from progprune_cli.config.schema import choice
from progprune_cli.data import hf_tokenizer
from progprune_cli.data.base import DataInfo, DataSplits, register
from progprune_cli.data.digits import check_fractions
from progprune_cli.data.fetch import root_path
from progprune_cli.errors import UserError

UNKNOWN = "\ufffd"  # the char vocabulary's last symbol: a character of val/test that training never saw
EMBEDDED = "Python's documentation topics (pydoc_data.topics)"


@dataclass
class TextConfig(DatasetConfig):
    # The dense cache knows the tokenizer folder by its file's content (DataSplits.fingerprint), not its path.
    KEYED_BY_CONTENT: ClassVar[tuple[str, ...]] = ("tokenizer_path",)

    root: Optional[str] = MISSING  # a .txt file or a folder of .txt files (read recursively, sorted); null: EMBEDDED
    tokenizer: str = choice("char", "byte", "hf")
    tokenizer_path: Optional[str] = MISSING  # tokenizer=hf: the Hugging Face folder whose tokenizer.json is read
    block_size: int = MISSING  # tokens per sample: the model's context
    val_fraction: float = MISSING
    test_fraction: float = MISSING


@dataclass(frozen=True)
class Tokens:
    """One text as token ids, the symbol of each id (the vocabulary, stored with the run as DataInfo.classes), the
    ids' positions where the val and test characters start, and what besides the text decides the ids."""

    ids: torch.Tensor
    symbols: tuple[str, ...]
    ends: tuple[int, int]
    identity: str = ""  # "" where the tokenizer is progprune's own code (char, byte)
    folder: str = ""  # tokenizer=hf: the folder it came from, for messages


def _char(opts: TextConfig, text: str, ends: tuple[int, int]) -> Tokens:
    # The vocabulary comes from the training split only, so val/test cannot leak into the model's input layer.
    symbols = tuple(sorted(set(text[:ends[0]]))) + (UNKNOWN,)
    index = {s: i for i, s in enumerate(symbols)}
    unknown = len(symbols) - 1
    return Tokens(torch.tensor([index.get(c, unknown) for c in text], dtype=torch.long), symbols, ends)


def _byte(opts: TextConfig, text: str, ends: tuple[int, int]) -> Tokens:
    data = text.encode("utf-8")  # all 256 byte values are the vocabulary, whatever the text holds
    return Tokens(torch.frombuffer(bytearray(data), dtype=torch.uint8).long(),
                  tuple(bytes([b]).decode("latin-1") for b in range(256)),
                  (len(text[:ends[0]].encode("utf-8")), len(text[:ends[1]].encode("utf-8"))))


def _hf(opts: TextConfig, text: str, ends: tuple[int, int]) -> Tokens:
    folder = hf_tokenizer.tokenizer_folder(opts.tokenizer_path)
    tokenizer = hf_tokenizer.load(folder)
    # Each split on its own: no token spans the characters of two splits, which are cut where char's are.
    pieces = [hf_tokenizer.encode(tokenizer, p) for p in (text[:ends[0]], text[ends[0]:ends[1]], text[ends[1]:])]
    ids = torch.tensor([i for piece in pieces for i in piece], dtype=torch.long)
    return Tokens(ids, hf_tokenizer.symbols(tokenizer), (len(pieces[0]), len(pieces[0]) + len(pieces[1])),
                  hf_tokenizer.identity(folder), str(folder))


TOKENIZERS: dict[str, Callable[[TextConfig, str, tuple[int, int]], Tokens]] = {"char": _char, "byte": _byte,
                                                                                "hf": _hf}


def read_text(root: Optional[str]) -> tuple[str, str]:
    """(the text, where it came from): the file, the folder's .txt files in sorted order joined by newlines, or the
    embedded default; a missing, empty or non-UTF-8 source is one line naming dataset.root."""
    if root is None:
        import pydoc_data.topics  # ships with every CPython: offline, nothing to download

        topics = pydoc_data.topics.topics
        return "\n".join(topics[key] for key in sorted(topics)), EMBEDDED
    path = root_path(root)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise UserError(f"dataset.root: {path} holds no .txt file; give a .txt file or a folder of them")
    elif path.is_file():
        files = [path]
    else:
        raise UserError(f"dataset.root: {path} does not exist; give a .txt file or a folder of them")
    parts = []
    for file in files:
        try:
            parts.append(file.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as error:
            raise UserError(f"dataset.root: {file} is not UTF-8 text (byte {error.start}: "
                            f"{error.object[error.start:error.start + 1]!r}); convert it to UTF-8") from None
        except OSError as error:
            raise UserError(f"dataset.root: {file}: {error.strerror or error}") from None
    text = "\n".join(parts)
    if not text.strip():
        raise UserError(f"dataset.root: {path} is empty; it needs text to train on")
    return text, str(path)


def _check(opts: TextConfig) -> float:
    if opts.block_size < 1:
        raise UserError(f"dataset.block_size: got {opts.block_size}; must be >= 1")
    return check_fractions(opts.val_fraction, opts.test_fraction)


def _windows(ids: torch.Tensor, block: int) -> TensorDataset:
    """Consecutive windows of `block` tokens and, as targets, the same windows one token later."""
    count = (len(ids) - 1) // block
    return TensorDataset(ids[: count * block].view(count, block), ids[1 : count * block + 1].view(count, block))


def tokenized(opts: TextConfig, text: str, source: str) -> tuple[list[torch.Tensor], Tokens]:
    """The train/val/test token ids of `text` (contiguous, in that order) and the vocabulary."""
    train_fraction = _check(opts)
    # Split the characters, not the tokens, so every tokenizer cuts the text at the same places.
    ends = (round(len(text) * train_fraction), round(len(text) * (train_fraction + opts.val_fraction)))
    tokens = TOKENIZERS[opts.tokenizer](opts, text, ends)
    ends = tokens.ends
    pieces = [tokens.ids[: ends[0]], tokens.ids[ends[0] : ends[1]], tokens.ids[ends[1] :]]
    for split, piece in zip(("train", "val", "test"), pieces):
        if len(piece) <= opts.block_size:
            raise UserError(f"dataset.block_size: got {opts.block_size}; the {split} split of {source} has only "
                            f"{len(piece)} tokens, and a sample needs block_size + 1")
    return pieces, tokens


def prepare(opts: TextConfig) -> None:
    """Reads and tokenizes the text once, so a missing, empty, non-UTF-8 or too short text fails before any run."""
    _check(opts)
    tokenized(opts, *read_text(opts.root))


@register("text", prepare, TextConfig)
def build(opts: TextConfig, seed: int) -> DataSplits:
    del seed  # the split is contiguous by design; the training windows' order comes from the run's seed
    text, source = read_text(opts.root)
    pieces, tokens = tokenized(opts, text, source)
    train, val, test = (_windows(piece, opts.block_size) for piece in pieces)
    vocab = len(tokens.symbols)
    info = DataInfo(channels=1, height=1, width=opts.block_size, num_classes=vocab, classes=tokens.symbols,
                    vocab=vocab, tokenizer_folder=tokens.folder)
    fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if tokens.identity:  # char and byte keep the text's hash alone, so their cache entries keep their keys
        fingerprint = hashlib.sha256(f"{fingerprint} {tokens.identity}".encode()).hexdigest()
    return DataSplits(train=train, val=val, test=test, info=info, fingerprint=fingerprint)

