"""sensitivity.csv: one row per unit and level, written atomically and read back without torch."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from progprune_cli import reading
from progprune_cli.atomic import write_atomic
from progprune_cli.errors import UserError

COLUMNS = ("unit", "level", "val_accuracy", "val_loss", "params_removed", "macs_removed")
_TYPES = {"unit": reading.clean_text, "level": float, "val_accuracy": float, "val_loss": float, "params_removed": int,
          "macs_removed": int}


def write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{row[k]:.6g}" if isinstance(row[k], float) else row[k] for k in COLUMNS})
    write_atomic(path, out.getvalue())


def read_table(path: Path) -> list[dict[str, Any]]:
    """The rows with their types, or a one-line UserError naming the file and what is wrong; read through
    progprune_cli.reading (no symlink or FIFO, capped size, a unit's name as one line without control characters)."""
    try:
        reader = csv.DictReader(io.StringIO(reading.read_text(path, reading.CSV_LIMIT), newline=""))
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise UserError(f"{path}: expected the columns {', '.join(COLUMNS)}")
        return [{k: _TYPES[k](row[k]) for k in COLUMNS} for row in reader]
    except FileNotFoundError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror})") from None
    except reading.Unreadable as error:
        raise UserError(str(error)) from None
    except csv.Error as error:
        raise UserError(f"{path}: not valid CSV ({error})") from None
    except (TypeError, ValueError) as error:
        raise UserError(f"{path}: a value is not what its column holds ({error})") from None
