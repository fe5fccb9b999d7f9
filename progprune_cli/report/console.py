"""Print one run's summary to a rich console: what was run, the answers, and the tables."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from progprune_cli.report.markdown import run_lines
from progprune_cli.report.tables import accuracy_table, answers, layers_table, params_table, speed_table, steps_table
from progprune_cli.report.terminal import rich_table
from progprune_cli.results.schema import Results


def print_summary(results: Results, console: Console, verbose: bool = False) -> None:
    """Accuracy, speed and parameters always; per-layer and every pruning step only when verbose."""
    run_id = results.run.id or "?"
    console.print(Text(f"progprune run {run_id}", style="bold"))
    for line in run_lines(results):
        console.print(Text(line))
    for line in answers(results):
        console.print(Text(f"• {line}"))
    for table in (accuracy_table(results), speed_table(results), params_table(results)):
        console.print(rich_table(table))
    steps = steps_table(results)
    if verbose:
        for extra in (layers_table(results), steps):
            if extra is not None:
                console.print(rich_table(extra))
    elif steps is not None and steps.footnotes:
        # Pruning notes (e.g. a zero-width guard) change how to read the numbers, so they show even when brief.
        for note in steps.footnotes:
            console.print(Text(f"note: {note}"))
