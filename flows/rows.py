"""Rows for one bulk write, held column by column (pure: no database).

The warehouse writes a batch of rows with one statement that unnests each column from a bound
list parameter: DuckDB converts the lists in C++, about as fast as scanning an Arrow table
(1,800 papers: 28 ms against 20 ms; 30,000: 0.39 s against 0.48 s), without loading pyarrow,
whose libraries and memory pool cost a backfill ~90 MB of its peak resident memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Rows:
    """Columns of equal length: name → (DuckDB type, values)."""

    columns: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {len(values) for _, values in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")

    @property
    def num_rows(self) -> int:
        """How many rows the columns hold."""
        return next((len(values) for _, values in self.columns.values()), 0)

    @property
    def column_names(self) -> list[str]:
        """The column names, in order."""
        return list(self.columns)

    def select_sql(self) -> str:
        """A SELECT that yields the rows from the bound `params()`: one unnest per column,
        which DuckDB zips row by row."""
        return "SELECT " + ", ".join(
            f"unnest(${name}::{kind}[]) AS {name}" for name, (kind, _) in self.columns.items()
        )

    def params(self) -> dict[str, list[Any]]:
        """The bound parameters of `select_sql`: each column's values."""
        return {name: values for name, (_, values) in self.columns.items()}

    def to_pylist(self) -> list[dict[str, Any]]:
        """The rows as dicts (for tests and messages)."""
        names, columns = self.column_names, self.params().values()
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
