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
