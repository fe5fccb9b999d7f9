"""A table on a rich console: the console a reader prints on, a run's tables as rich lays them out, and a compare
table fitted to the terminal (never a cell cut to `…`)."""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from progprune_cli.report.fit import fit, width_of
from progprune_cli.report.render import Table

PIPED_WIDTH = 150  # piped output: wide tables rather than cells wrapped at rich's 80-column default
_STATUS_STYLE = {"complete": "green", "running": "yellow", "failed": "red", "interrupted": "magenta"}


def reader_console(file: IO[str] | None = None, width: int = PIPED_WIDTH) -> Console:
    """The console `progprune report` and `compare` print on: the terminal as it is, or `width` columns when the
    output is piped."""
    console = Console(file=file)
    return console if console.is_terminal else Console(file=file, width=width)


def rich_table(table: Table) -> RichTable:
    """The first column names the row (a model, a layer, a unit) and never wraps or truncates: a narrow terminal
    squeezes the figures, right-aligned, instead. Text, never markup: a name like `features[0]` stays as it is."""
    notes = "\n".join(f"• {note}" for note in table.footnotes)
    out = RichTable(title=table.title, title_justify="left", caption_justify="left",
                    caption=Text(notes, style="table.caption") if notes else None)
    for i, header in enumerate(table.headers):
        out.add_column(Text(header), justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in table.rows:
        out.add_row(*(Text(table.text(row, i)) for i in range(len(table.headers))))
    return out


def print_fitted(table: Table, console: Console | None = None) -> None:
    """A terminal gets the table as it is when it fits, else transposed (one column per run, in as many parts as
    it needs) so that no cell is cut to `…`; piped output gets it whole at full width, never folded."""
    console = console or reader_console()
    grids = fit(table, console.width if console.is_terminal else None)
    if not console.is_terminal:
        assert grids[0].widths is not None
        # Fixed widths also spare rich measuring every cell again (a sweep may hold hundreds of runs).
        console = Console(file=console.file, width=width_of(grids[0].widths))
    if grids[0].transposed:
        console.print(Text(f"one column per run: the {len(table.headers)} columns do not fit in {console.width}",
                           style="dim"))
    for grid in grids:
        view = RichTable(header_style="bold", title=grid.title, title_justify="left")
        for i, header in enumerate(grid.headers):
            right = bool(grid.rows) and all(flags[i] for flags in grid.right)  # a numeric column: header too
            # fold, not ellipsis: a cell too long for its column wraps onto more lines instead of becoming `…`.
            view.add_column(Text(header), justify="right" if right else "left", overflow="fold",
                            width=grid.widths[i] if grid.widths else None,
                            min_width=grid.min_widths[i] if grid.min_widths else None)
        for r, texts in enumerate(grid.rows):
            # Text, not str: config values like [0.1,0.2] must not be read as rich markup.
            view.add_row(*(Text(t, justify="right" if grid.right[r][c] else "left",
                                style=_STATUS_STYLE.get(t, "") if r == grid.status_row or c == grid.status_column
                                else "")
                           for c, t in enumerate(texts)))
        console.print(view)
