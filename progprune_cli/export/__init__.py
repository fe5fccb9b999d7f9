"""Using what a run produced outside progprune: tensor-only checkpoints, `load_model`, and `progprune export`."""

from __future__ import annotations

from typing import Any

__all__ = ["load_model", "save_compacted"]


def __getattr__(name: str) -> Any:
    # Lazy, so `progprune export --help` (which imports progprune_cli.export.cli) does not wait for torch.
    if name in __all__:
        from progprune_cli.export import saved

        return getattr(saved, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
