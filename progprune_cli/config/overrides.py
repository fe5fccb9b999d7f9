"""Command-line overrides read with Hydra's public parser: one-line errors, which ones are Hydra's own, and a
sweep's jobs in the order (and so the numbering) Hydra's basic sweeper gives them."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from progprune_cli.errors import UserError


def parse(lines: list[str], source: str = "") -> list[Override]:
    """Each line parsed on its own (so an error names it); `source` (a file) prefixes the error when given."""
    parser = OverridesParser.create()
    where = f"{source}: " if source else ""
    parsed = []
    for line in lines:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException:
            raise UserError(f"{where}{line}: not an override; write KEY=VALUE, +KEY=VALUE or GROUP=NAME") from None
        if not override.key_or_group:
            raise UserError(f"{where}{line}: not an override (no key before '='); write KEY=VALUE, +KEY=VALUE or "
                            "GROUP=NAME")
        parsed.append(override)
    return parsed


def is_hydra(override: Override) -> bool:
    """An override of Hydra's own config (hydra.run.dir=, hydra/launcher=, a group packaged into hydra)."""
    return any(re.match(r"^hydra($|[./])", name or "") for name in (override.key_or_group, override.package))


def jobs(parsed: list[Override]) -> list[list[str]]:
    """The jobs a sweep runs, each a list of overrides, exactly as Hydra's basic sweeper splits them: a later
    override of a key replaces an earlier one in its place, sweep values in order, the cartesian product of all."""
    lists: dict[str, list[str]] = {}
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            lists[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            lists[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise UserError(f"{override.input_line}: a {override.value_type.name.lower()} sweep needs a sweeper "  # type: ignore
                            "that samples (e.g. hydra/sweeper=optuna); list the values instead: KEY=a,b,c")
    return [list(job) for job in itertools.product(*lists.values())]


def literal_dir(parsed: list[Override], key: str) -> Path | None:
    """The folder `key` (hydra.run.dir or hydra.sweep.dir) names, when given without interpolations (Hydra
    resolves `${...}` itself, later: such a folder is checked when the run starts)."""
    for override in parsed:
        if override.key_or_group == key and not override.is_sweep_override():
            value = override.value()
            if isinstance(value, str) and "${" not in value:
                return Path(value)
    return None


def candidates(parsed: list[Override]) -> list[list[str]]:
    """Jobs that between them give every value a sampling sweeper (Optuna) may choose for each key at least once:
    all of a choice, both ends of an interval or range; the other keys at their first value (a search samples
    combinations it does not list, so each value is checked once rather than every product)."""
    lists: dict[str, list[str]] = {}
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            lists[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_interval_sweep() or (override.is_range_sweep() and not override.value().shuffle):
            # Optuna samples a range(start, stop) as a distribution from start to stop inclusive.
            sweep = override.value()
            ends = (sweep.start, sweep.end) if override.is_interval_sweep() else (sweep.start, sweep.stop)
            lists[key] = [f"{key}={value}" for value in dict.fromkeys(ends)]
        else:
            lists[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
    first = [values[0] for values in lists.values()]
    found = [first]
    for i, values in enumerate(lists.values()):
        found += [first[:i] + [value] + first[i + 1:] for value in values[1:]]
    return found
