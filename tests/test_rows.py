"""Column-wise rows and their one-statement binding, on a real DuckDB connection."""

from __future__ import annotations

import duckdb
import pytest

from flows.rows import Rows

LISTS = [["Ada", "Bob"], [], None, [""], ["", ""], ["x y", "é 字"], ("from", "a tuple")]


def bound(rows: Rows) -> list[tuple]:
    """The rows DuckDB reads back from `select_sql` and `params`."""
    with duckdb.connect() as con:
        return con.execute(rows.select_sql(), rows.params()).fetchall()


def test_string_lists_travel_as_joined_strings_and_come_back_exactly() -> None:
    rows = Rows({"n": ("INTEGER", list(range(len(LISTS)))), "names": ("VARCHAR[]", LISTS)})
    assert "string_split" in rows.select_sql()  # joined, not bound as lists
    assert all(isinstance(v, str | None) for v in rows.params()["names"])
    expected = [(n, None if v is None else list(v)) for n, v in enumerate(LISTS)]
    assert bound(rows) == expected
    assert rows.to_pylist()[0] == {"n": 0, "names": ["Ada", "Bob"]}  # the values as given


@pytest.mark.parametrize(
    "odd", [["a\x1fb"], ["\x1f", ""]], ids=["separator inside", "separator alone"]
)
def test_lists_holding_the_separator_are_bound_as_lists(odd: list[str]) -> None:
    rows = Rows({"n": ("INTEGER", [1, 2]), "v": ("VARCHAR[]", [odd, ["plain"]])})
    assert "string_split" not in rows.select_sql()
    assert bound(rows) == [(1, odd), (2, ["plain"])]


def test_a_list_of_non_strings_is_left_for_duckdb_to_convert() -> None:
    rows = Rows({"v": ("VARCHAR[]", [[1, 2]])})
    assert "string_split" not in rows.select_sql()
    assert rows.params() == {"v": [[1, 2]]}


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        Rows({"a": ("INTEGER", [1]), "b": ("INTEGER", [1, 2])})
