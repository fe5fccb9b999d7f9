"""The one safe reader of run-folder and cache files: no symlink, no special file, capped size and depth, no YAML
alias, and no control character in what it returns. Standard library and PyYAML only: `compare` never imports torch."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, Collection, Sequence

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.resolver import Resolver

MiB = 2**20
# Limits no honest file reaches; they only stop a reader from taking all memory or time. results.json is the largest
# run-folder file: ~2 KB per model plus ~120 bytes per unit per pruning step (its per-step layer log, indent 1), so a
# big model (resnet50: 54 units) over 1,000 steps is ~6.5 MB, and a few MB is the most a real run writes.
JSON_LIMIT = 64 * MiB
STATUS_LIMIT = 1 * MiB  # status.json: a dozen short fields (< 1 KB)
# .hydra/config.yaml and overrides.yaml are a few KB; layers.yaml is ~40 bytes per unit.
YAML_LIMIT = 4 * MiB
# metrics.csv and sensitivity.csv: ~100 bytes a row, one row per epoch and per pruning step (or unit and level).
CSV_LIMIT = 64 * MiB
# progprune's files nest at most ~7 levels (results.json: pruning.steps[i].layers.<unit>.target); 64 is far above.
MAX_DEPTH = 64

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: opening a FIFO never waits
_KINDS = ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
_REFUSED = "anchors and aliases are refused"


# C0, DEL and C1 controls, and the bidirectional overrides that reorder what a terminal shows, become U+FFFD; in a
# one-line value tab and the line breaks (CR, LF, U+2028, U+2029) become a space; multi-line text keeps tab and LF.
_ONE_LINE = {c: "\ufffd" for c in (*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_ONE_LINE.update({ord(c): " " for c in "\t\r\n\u2028\u2029"})
_LINES = _ONE_LINE | {ord("\t"): "\t"} | {ord(c): "\n" for c in "\r\n\u2028\u2029"}


class Unreadable(ValueError):
    """A file the readers refuse or cannot read; str() is one line naming the file and why."""

    def __init__(self, path: str | Path, why: str, line: int | None = None) -> None:
        self.path, self.why, self.line = Path(path), clean_text(why), line  # line: where a syntax error is
        super().__init__(f"{clean_text(str(path))}: {self.why}")


def clean_text(text: str, lines: bool = False) -> str:
    """`text` with every control character replaced (U+FFFD); tab and line breaks become a space, or are kept
    (tab, and every line break as a newline; CR LF as one) when `lines` says the text has several lines."""
    if text.isprintable():  # the common case, checked in C
        return text
    return text.replace("\r\n", "\n").translate(_LINES if lines else _ONE_LINE)


def clean(value: Any, lines: Collection[str] = ()) -> Any:
    """`value` with control characters replaced in every string of it, dict keys included (clean_text); `lines`
    names the top-level keys whose values are multi-line text. Recursive: for values a reader has depth-checked."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            key = clean(key)
            cleaned[key] = clean_text(item, True) if key in lines and isinstance(item, str) else clean(item)
        return cleaned
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def is_file(path: str | Path) -> bool:
    """A regular file and not a symlink (the readers' rule); unlike Path.is_file, no link is followed."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _open_at(name: str, directory: int | None, shown: str, folder: bool = False) -> int:
    """Opens one component without following a link; a special file is refused before it is opened."""
    try:
        mode = os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            raise Unreadable(shown, "a symbolic link (never followed)")
        if not (stat.S_ISDIR if folder else stat.S_ISREG)(mode):
            raise Unreadable(shown, f"not a {'folder' if folder else 'regular file'} ({_kind(mode)})")
        return os.open(name, _FLAGS | (os.O_DIRECTORY if folder else 0), dir_fd=directory)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno == errno.ELOOP:  # replaced by a link since the stat
            raise Unreadable(shown, "a symbolic link (never followed)") from None
        raise Unreadable(shown, f"cannot be opened ({error.strerror})") from None


def _open(name: str, within: str | None) -> int:
    """Every component of `name` below `within` (only its last one when `within` is None) is opened with
    O_NOFOLLOW; FileNotFoundError when a component is missing. Paths stay strings here: this runs for every file
    of every folder `compare` reads."""
    if within is None or os.path.dirname(name) == within:  # a file of the folder itself: only its name can be a link
        return _open_at(name, None, name)
    head = within.rstrip(os.sep) + os.sep
    if name.startswith(head):  # string work: pathlib's relative_to costs more than the reads themselves
        parts: Sequence[str] = [part for part in name[len(head):].split(os.sep) if part]
    else:
        parts = Path(name).relative_to(within).parts
    try:
        directory = os.open(within, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the folder asked for: trusted
    except FileNotFoundError:
        raise
    except OSError as error:
        raise Unreadable(within, f"cannot be opened ({error.strerror})") from None
    try:
        for i, part in enumerate(parts[:-1]):
            below = _open_at(part, directory, head + os.sep.join(parts[: i + 1]), folder=True)
            os.close(directory)
            directory = below
        return _open_at(parts[-1], directory, name)
    finally:
        os.close(directory)


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n} bytes"


def read_bytes(path: str | Path, limit: int, within: str | Path | None = None) -> bytes:
    """At most `limit` bytes of a regular file, never through a symlink (none below `within` either); Unreadable
    otherwise, FileNotFoundError when it is missing."""
    name = os.fspath(path)
    fd = _open(name, None if within is None else os.fspath(within))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # swapped for something else since the stat
            raise Unreadable(name, f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise Unreadable(name, f"{info.st_size} bytes, over the limit of {_size(limit)}")
        parts, total, want = [], 0, info.st_size + 1  # one read, then one that finds the end
        while chunk := os.read(fd, want):
            parts.append(chunk)
            total += len(chunk)
            if total > limit:  # grew since the fstat
                raise Unreadable(name, f"over the limit of {_size(limit)}")
            want = min(limit + 1 - total, MiB)
        return b"".join(parts)
    except OSError as error:
        raise Unreadable(name, f"cannot be read ({error.strerror})") from None
    finally:
        os.close(fd)


def _decode(path: str | Path, limit: int, within: str | Path | None) -> str:
    data = read_bytes(path, limit, within)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Unreadable(path, f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})") from None


def read_text(path: str | Path, limit: int, within: str | Path | None = None) -> str:
    """UTF-8 text, read as read_bytes does, with control characters other than tab and newline replaced."""
    return clean_text(_decode(path, limit, within), lines=True)


def _deeper(node: dict[Any, Any] | list[Any], levels: int) -> bool:
    """Whether a dict or list nests more than `levels` below `node`; recursion stops there."""
    for child in node.values() if type(node) is dict else node:
        if type(child) is dict or type(child) is list:
            if levels == 0 or _deeper(child, levels - 1):
                return True
    return False


def _check_depth(value: Any, max_depth: int, path: str | Path) -> None:
    if (type(value) is dict or type(value) is list) and _deeper(value, max_depth - 1):
        raise Unreadable(path, f"nested deeper than {max_depth} levels")


def read_json(path: str | Path, limit: int = JSON_LIMIT, max_depth: int = MAX_DEPTH,
              within: str | Path | None = None, lines: Collection[str] = ()) -> Any:
    """A JSON document read as read_bytes does, nested at most `max_depth` deep, its strings clean()ed (`lines`:
    top-level keys holding multi-line text). A syntax error is Unreadable with `line` set."""
    text = _decode(path, limit, within)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise Unreadable(path, f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno})",
                         line=error.lineno) from None
    except RecursionError:  # the C parser gives up long before the stack does
        raise Unreadable(path, f"nested deeper than {max_depth} levels") from None
    except ValueError as error:  # e.g. an integer of more than sys.get_int_max_str_digits() digits
        raise Unreadable(path, f"not valid JSON ({error})") from None
    _check_depth(doc, max_depth, path)
    # A JSON string holds a control character only as an escape (json.loads refuses a raw one) or, raw, as DEL or
    # outside ASCII: ASCII text with no backslash and no DEL needs no clean(). progprune writes results.json that way
    # (json.dumps escapes non-ASCII), so walking every string is saved where `compare` reads hundreds of them.
    return doc if text.isascii() and "\\" not in text and "\x7f" not in text else clean(doc, lines)


class _Refused(yaml.YAMLError):
    """What the composer below refuses; its message is the reason as it is."""


class _Composer(Composer):
    """Refuses anchors and aliases (a "billion laughs" document expands exponentially through them; progprune never
    writes one) and nesting deeper than MAX_DEPTH, before anything is built."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            what = "alias *" if isinstance(event, AliasEvent) else "anchor &"
            raise _Refused(f"YAML {what}{event.anchor} at line {event.start_mark.line + 1}: {_REFUSED}")
        nested = isinstance(event, CollectionStartEvent)
        self.depth += nested
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= nested


# libyaml from 0.2.5 on refuses nesting deeper than 1000 (flow and block) before its recursive C composer could
# overflow the stack; PyYAML's wheels bundle it.
_LIBYAML_NESTS = yaml.__with_libyaml__ and yaml._yaml.get_version() >= (0, 2, 5)  # type: ignore[attr-defined]
if yaml.__with_libyaml__:
    from yaml.cyaml import CParser

    class _Loader(_Composer, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        """libyaml's parser (the slow part in Python) with the composer above in Python over its events."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            _Composer.__init__(self)
else:  # pragma: no cover - PyYAML built without libyaml
    class _Loader(_Composer, yaml.SafeLoader):  # type: ignore[no-redef]
        """yaml.SafeLoader with the composer above."""


def read_yaml(path: str | Path, limit: int = YAML_LIMIT, within: str | Path | None = None) -> Any:
    """A YAML document read as read_bytes does, with safe types only, no anchor or alias, nested at most MAX_DEPTH
    deep, its strings clean()ed; any error is Unreadable."""
    text = _decode(path, limit, within)
    # Without '&' and '*' a document holds no anchor and no alias: libyaml's own safe loader, all in C, may read it.
    loader = yaml.CSafeLoader if _LIBYAML_NESTS and "&" not in text and "*" not in text else _Loader
    try:
        doc = yaml.load(text, Loader=loader)  # noqa: S506 - both build safe types only
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise Unreadable(path, f"not valid YAML ({error.problem or error.context}{where})",
                         line=mark.line + 1 if mark is not None else None) from None
    except _Refused as error:
        raise Unreadable(path, str(error)) from None
    except yaml.YAMLError as error:  # e.g. a raw control character (the reader's): its first line says which
        raise Unreadable(path, f"not valid YAML ({str(error).splitlines()[0]})") from None
    except RecursionError:
        raise Unreadable(path, f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, TypeError, OverflowError) as error:  # a constructor's: a huge int, a bad timestamp ...
        raise Unreadable(path, f"not valid YAML ({error})") from None
    _check_depth(doc, MAX_DEPTH, path)
    return clean(doc)
