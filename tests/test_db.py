"""Database access, schema and store semantics on a real PostgreSQL (both test modes)."""

from __future__ import annotations

import threading
from pathlib import Path

import pg8000.exceptions
import pytest

from tests.support.dbtarget import DbTarget
from waha_sync.common.db.database import Database, Tx, server_kind
from waha_sync.common.db.retry import RetryPolicy
from waha_sync.common.db.schema import LATEST, migrate, schema_version
from waha_sync.common.db.sqlstate import sqlstate
from waha_sync.common.db.url import parse_url
from waha_sync.common.errors import DatabaseUnavailable, FencedError
from waha_sync.common.store.base import StoredEntry
from waha_sync.common.store.postgres import PgStore
from waha_sync.common.sync.content import encode


def database(target: DbTarget) -> Database:
    return Database(parse_url(target.url), chaos_40001_rate=target.chaos_rate)


def entry(path: str, data: bytes) -> tuple[StoredEntry, bytes]:
    blob = encode(data)
    return StoredEntry(path, blob.sha256, len(data), 0o644, 1, "application/json"), data


def test_concurrent_migrations_all_succeed(db: DbTarget) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(database(db))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert schema_version(database(db)) == LATEST
    cols = db.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'waha_sync_files' "
        "ORDER BY ordinal_position"
    )
    assert [c[0] for c in cols] == [
        "instance",
        "path",
        "size_bytes",
        "sha256",
        "updated_at",
        "piece_bytes",
    ]  # stable for operators: columns are only ever added at the end


def test_transactions_retry_injected_40001(db: DbTarget) -> None:
    conn = database(db)
    migrate(conn)
    store = PgStore(conn)
    store.claim("i", "me")
    for n in range(30):
        e, data = entry(f"f{n}.json", f'{{"n": {n}}}'.encode())
        store.put_blobs([encode(data)])
        store.commit("i", 1, "me", [e], [])
    assert db.sql("SELECT count(*) FROM waha_sync_files WHERE instance = 'i'")[0][0] == 30
    assert db.sql("SELECT last_commit FROM waha_sync_instances")[0][0] == 30
    if db.chaos_rate:
        assert conn.retries > 0, "the crdb-like mode must really inject 40001"
        isolation = conn.transaction(lambda tx: tx.run("SHOW transaction_isolation")[0][0])
        assert isolation == "serializable"


def test_non_retryable_errors_surface_and_the_budget_is_bounded(plain_db: DbTarget) -> None:
    conn = Database(parse_url(plain_db.url), retry=RetryPolicy(attempts=3, base_seconds=0.001))
    with pytest.raises(pg8000.exceptions.DatabaseError) as err:
        conn.transaction(lambda tx: tx.run("SELECT * FROM no_such_table"))
    assert sqlstate(err.value) == "42P01"
    calls = []

    def always_conflicts(tx: Tx) -> None:
        calls.append(1)
        tx.run("DO $$BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40001'; END$$")

    with pytest.raises(pg8000.exceptions.DatabaseError):
        conn.transaction(always_conflicts)
    assert len(calls) == 3


def test_concurrent_commits_get_distinct_numbers(db: DbTarget) -> None:
    migrate(database(db))
    PgStore(database(db)).claim("i", "me")
    ids: list[int] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        store = PgStore(database(db))
        for n in range(5):
            e, data = entry(f"w{w}/{n}.json", b"{}")
            store.put_blobs([encode(data)])
            cid = store.commit("i", 1, "me", [e], []).commit_id
            with lock:
                ids.append(cid)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids) == list(range(1, 21))


def test_fenced_commit_writes_nothing(db: DbTarget) -> None:
    conn = database(db)
    migrate(conn)
    store = PgStore(conn)
    old = store.claim("i", "pod-a")
    new = store.claim("i", "pod-b")
    assert new.epoch == old.epoch + 1
    e, data = entry("creds.json", b'{"a": 1}')
    store.put_blobs([encode(data)])
    with pytest.raises(FencedError, match=r"claimed by pod-b \(epoch 2\)"):
        store.commit("i", old.epoch, "pod-a", [e], [])
    assert db.sql("SELECT count(*) FROM waha_sync_entries")[0][0] == 0
    assert store.commit("i", new.epoch, "pod-b", [e], []).commit_id == 1


def test_identical_content_is_stored_once(db: DbTarget, tmp_path: Path) -> None:
    root = tmp_path / "s"
    for name in ("a", "b", "c"):
        (root / name).mkdir(parents=True)
        (root / name / "same.json").write_text('{"same": true}')
    assert db.cli("push", "--sessions-dir", str(root)) == 0
    assert db.sql("SELECT count(*) FROM waha_sync_blobs")[0][0] == 1
    assert db.sql("SELECT count(*) FROM waha_sync_files")[0][0] == 3
    chunk = db.sql("SELECT max(length(data)) FROM waha_sync_chunks")[0][0]
    assert isinstance(chunk, int) and chunk <= 512 * 1024


def test_large_files_are_chunked_under_512_kib(plain_db: DbTarget, tmp_path: Path) -> None:
    import os

    root = tmp_path / "s"
    root.mkdir()
    (root / "media.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    assert plain_db.cli("push", "--sessions-dir", str(root)) == 0
    rows = plain_db.sql("SELECT seq, length(data) FROM waha_sync_chunks ORDER BY seq")
    assert len(rows) == 7 and all(int(str(r[1])) <= 512 * 1024 for r in rows)
    assert plain_db.sql("SELECT codec FROM waha_sync_blobs")[0][0] == "identity"
    out = tmp_path / "out"
    assert plain_db.cli("restore", "--sessions-dir", str(out)) == 0
    assert (out / "media.bin").read_bytes() == (root / "media.bin").read_bytes()


def test_connection_loss_is_reported_as_unavailable(pg_server: object, tmp_path: Path) -> None:
    conn = Database(parse_url("postgresql://u:pw@127.0.0.1:1/db?connect_timeout=2"))
    with pytest.raises(DatabaseUnavailable, match=r"127\.0\.0\.1:1"):
        conn.transaction(lambda tx: tx.run("SELECT 1"))


def test_a_dropped_connection_is_reopened_and_the_transaction_rerun(plain_db: DbTarget) -> None:
    conn = Database(parse_url(plain_db.url))
    pid = conn.transaction(lambda tx: tx.run("SELECT pg_backend_pid()")[0][0])
    plain_db.sql("SELECT pg_terminate_backend(:p)", p=pid)
    assert conn.transaction(lambda tx: tx.run("SELECT pg_backend_pid()")[0][0]) != pid
    assert conn.retries == 1


@pytest.mark.parametrize(
    ("version", "kind"),
    [
        (
            "CockroachDB CCL v24.2.4 (x86_64-pc-linux-gnu, built 2024/10/07 14:47:14, go1.22.5)",
            "cockroachdb",
        ),
        ("CockroachDB OSS v22.2.19 (aarch64-unknown-linux-gnu, built 2024/02/12)", "cockroachdb"),
        (
            "PostgreSQL 16.4 on x86_64-pc-linux-gnu, compiled by gcc (GCC) 12.2.0, 64-bit",
            "postgresql",
        ),
    ],
)
def test_server_kind_from_version(version: str, kind: str) -> None:
    assert server_kind(version) == kind


def test_server_kind_of_the_test_server(plain_db: DbTarget) -> None:
    conn = Database(parse_url(plain_db.url))
    conn.connect()
    assert conn.kind == "postgresql" and conn.version.startswith("PostgreSQL")
