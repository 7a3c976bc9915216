"""The SQL layer's naming rules: parameters mean one thing, rows are read by column name."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import NamedTuple

import pytest

from tests.support.dbtarget import DbTarget
from waha_sync.common.db.database import Database
from waha_sync.common.db.url import parse_url
from waha_sync.common.store import sql
from waha_sync.common.store.base import Instance, StoredEntry

_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")  # :name, not a ::cast


def statements() -> dict[str, str]:
    """Every statement ``PgStore`` runs, by its name in ``sql``."""
    return {
        k: v
        for k, v in vars(sql).items()
        if k.isupper() and isinstance(v, str) and not k.startswith("_")
    }


def test_every_parameter_is_one_listed_name() -> None:
    used: set[str] = set()
    for name, text in statements().items():
        found = set(_PLACEHOLDER.findall(text))
        assert found <= set(sql.PARAMETERS), f"{name}: unlisted {found - set(sql.PARAMETERS)}"
        assert all(len(p) > 2 for p in found), f"{name}: a one- or two-letter name in {found}"
        used |= found
    assert used == set(sql.PARAMETERS), f"listed but never used: {set(sql.PARAMETERS) - used}"


def test_bulk_parameters_and_only_they_end_in_list() -> None:
    for name, text in statements().items():
        for cast in re.findall(r"CAST\(:(\w+) AS \w+\[\]\)", text):
            assert cast.endswith("_list"), f"{name}: array parameter {cast} lacks _list"
        for p in _PLACEHOLDER.findall(text):
            if p.endswith("_list"):
                assert f"CAST(:{p} AS" in text, f"{name}: {p} is not cast to an array"


def test_page_rows_follow_stored_entry_fields() -> None:
    assert tuple(f.name for f in fields(StoredEntry)) == sql.ENTRY_FIELDS
    for page in (sql.LIVE_PAGE, sql.TREE_PAGE):
        listed = re.search(r"json_build_array\(([^)]*)\)", page)
        assert listed is not None
        columns = [c.strip().split(".")[-1] for c in listed.group(1).split(",")]
        assert len(columns) == len(sql.ENTRY_FIELDS)
        pairs = zip(columns, sql.ENTRY_FIELDS, strict=True)
        assert columns == ["NULL" if c == "NULL" else f for c, f in pairs]


class _Pair(NamedTuple):
    name: str
    n: int


def test_records_are_read_by_column_name(plain_db: DbTarget) -> None:
    db = Database(parse_url(plain_db.url))
    try:
        rows = db.transaction(
            lambda tx: tx.records(
                "SELECT v AS name, length(v) AS n FROM unnest(CAST(:names AS TEXT[])) AS v "
                "ORDER BY v",
                _Pair,
                names="{ab,c}",
            )
        )
        assert rows == [_Pair("ab", 2), _Pair("c", 1)] and rows[0].n == 2
        lease = db.transaction(
            lambda tx: tx.records(
                "SELECT 'i' AS name, CAST(3 AS BIGINT) AS epoch, 'me' AS holder, "
                "CAST(7 AS BIGINT) AS last_commit, NULL AS claimed_at",
                Instance,
            )
        )
        assert lease == [Instance("i", 3, "me", 7, None)]
        # Columns in another order or under other names are refused, not misread.
        with pytest.raises(
            TypeError,
            match=r"expected the columns \('name', 'n'\), got \('n', 'name'\) from: SELECT 1",
        ):
            db.transaction(lambda tx: tx.records("SELECT 1 AS n, 'x' AS name", _Pair))
        with pytest.raises(TypeError, match="idx"):
            db.transaction(lambda tx: tx.named("SELECT 1 AS id", ("idx",)))
        assert db.transaction(lambda tx: tx.records("SELECT 1 AS n WHERE false", _Pair)) == []
        assert db.transaction(lambda tx: tx.value("SELECT 1 WHERE false")) is None
        assert db.transaction(lambda tx: tx.values("SELECT * FROM generate_series(1, 3)")) == [
            1,
            2,
            3,
        ]
    finally:
        db.close()
