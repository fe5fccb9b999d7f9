"""The one table type of report/ and compare, and its text renderers (markdown, CSV, JSON rows, LaTeX); the terminal's
are in terminal.py. A new format is one function registered in FORMATS."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from progprune_cli.registry import Registry


@dataclass(frozen=True)
class Table:
    """Rows of cells under `headers`, with an optional title and footnotes. A cell is a display string (the run's
    tables format their own figures) or a raw value (compare: numbers, None) that `text` formats from its column's
    name; renderers only lay the table out and never compute a number. `key_column` (--diff): the column whose
    value, not the header, names how a row is formatted; `signed_column`: its values always carry a sign."""

    headers: list[str]
    rows: list[list[Any]]
    title: str | None = None
    footnotes: list[str] = field(default_factory=list)
    key_column: str | None = None
    signed_column: str | None = None

    @classmethod
    def from_records(cls, headers: list[str], records: list[dict[str, Any]], key_column: str | None = None,
                     signed_column: str | None = None) -> Table:
        """Rows given as {header: value}; a header a record lacks is None there."""
        return cls(headers, [[record.get(h) for h in headers] for record in records], key_column=key_column,
                   signed_column=signed_column)

    def text(self, row: Sequence[Any], i: int) -> str:
        """What a reader sees of `row`'s cell in column `i`."""
        key = str(row[self.headers.index(self.key_column)]) if self.key_column else self.headers[i]
        return format_cell(key, row[i], signed=True if self.headers[i] == self.signed_column else None)

    def numeric(self, i: int) -> bool:
        """Right-aligned: the table has rows and every value present in column `i` is a number (never in a
        keyed table, whose columns mix quantities)."""
        return (self.key_column is None and bool(self.rows)
                and all(is_number(row[i]) for row in self.rows if row[i] is not None))

    def records(self) -> list[dict[str, Any]]:
        """Each row as {header: value}."""
        return [dict(zip(self.headers, row)) for row in self.rows]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format_float(key: str, value: float, signed: bool) -> str:
    sign = "+" if signed else ""
    name = key.rsplit(".", 1)[-1]
    if "speedup" in name or "compression" in name:
        return f"{value:{sign}.2f}"
    if "acc" in name or "sparsity" in name or "loss" in key or "accuracy" in key or name in ("train", "val", "test"):
        return f"{value:{sign}.4f}"
    return f"{value:{sign}.4g}"


def format_cell(key: str, value: Any, signed: bool | None = None) -> str:
    """Text for a raw value, as its column `key` reads best; deltas (`*_vs_*`) carry a sign unless signed=False.
    A display string is shown as it is."""
    if signed is None:
        signed = key.rsplit("_vs_", 1)[-1] in ("orig", "base", "long") and "speedup" not in key
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    if isinstance(value, float):
        return _format_float(key, value, signed)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


FORMATS: Registry[Callable[[Table], str]] = Registry("format")


def markdown_text(text: str) -> str:
    # A bare `|` would end the cell early; newlines would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


@FORMATS.register("md")
def to_markdown(table: Table) -> str:
    """GitHub markdown: `## title`, the grid (numeric columns right-aligned), then the footnotes as a list."""
    lines = [f"## {table.title}", ""] if table.title else []
    lines += ["| " + " | ".join(markdown_text(h) for h in table.headers) + " |",
              "|" + "|".join("---:" if table.numeric(i) else "---" for i in range(len(table.headers))) + "|"]
    lines += ["| " + " | ".join(markdown_text(table.text(row, i)) for i in range(len(table.headers))) + " |"
              for row in table.rows]
    if table.footnotes:
        lines += [""] + [f"- {markdown_text(note)}" for note in table.footnotes]
    return "\n".join(lines) + "\n"


def _raw(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


@FORMATS.register("csv")
def to_csv(table: Table) -> str:
    """Full-precision values, empty where missing: for spreadsheets and pandas."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.headers)
    writer.writerows([_raw(value) for value in row] for row in table.rows)
    return buffer.getvalue()


@FORMATS.register("json")
def to_json(table: Table) -> str:
    """A JSON list of row objects, values as they are."""
    return json.dumps(table.records(), indent=1) + "\n"


# LaTeX's special characters, and the symbols the tables print, as text any LaTeX engine typesets.
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "×": r"$\times$",
          "—": "---", "–": "--", "−": "$-$", "≤": r"$\leq$", "≥": r"$\geq$"}


def latex_text(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text.replace("\n", " "))


@FORMATS.register("latex")
def to_latex(table: Table) -> str:
    """A booktabs `tabular` to paste into a paper's table float: the title as a comment, the footnotes as
    full-width rows below the rule."""
    n = len(table.headers)
    lines = [f"% {latex_text(table.title)}"] if table.title else []
    lines += [r"\begin{tabular}{" + "".join("r" if table.numeric(i) else "l" for i in range(n)) + "}", r"\toprule",
              " & ".join(latex_text(h) for h in table.headers) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_text(table.text(row, i)) for i in range(n)) + r" \\" for row in table.rows]
    lines.append(r"\bottomrule")
    lines += [rf"\multicolumn{{{n}}}{{l}}{{\footnotesize {latex_text(note)}}} \\" for note in table.footnotes]
    return "\n".join([*lines, r"\end{tabular}"]) + "\n"
