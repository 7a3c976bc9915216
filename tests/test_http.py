"""The sidecar's HTTP contract, against a real sidecar process and a real database."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.dbtarget import DbTarget
from tests.support.podsim import SidecarProc, free_port
from waha_sync.common.local.postgres import LocalPostgres

KEY = "k3y-for-the-sidecar-0123"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _restored(db: DbTarget, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    assert db.cli("restore", "--sessions-dir", str(root)) == 0
    return root


def _waha_tree(root: Path) -> int:
    """Two NOWEB sessions, a namespace database stand-in and one file over the limit."""
    files = {
        "noweb/default/creds.json": '{"me": "alice"}',
        "noweb/default/pre-key-1.json": '{"k": 1}',
        "noweb/work/creds.json": '{"me": "bob"}',
        "noweb/waha.json": '{"ns": true}',
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "noweb/work/big.json").write_text('{"x": "' + "y" * 3000 + '"}')
    return sum(len(t) for t in files.values())


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _metrics(side: SidecarProc, **headers: str) -> dict[str, float]:
    reply = side.get("/metrics", **headers)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        assert family.name.startswith("waha_sync_"), family.name
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def test_open_endpoints_report_sessions_skips_and_counters(
    plain_db: DbTarget, tmp_path: Path
) -> None:
    root = _restored(plain_db, tmp_path / "vol")
    stored_bytes = _waha_tree(root)
    side = SidecarProc(plain_db, root, tmp_path / "side.log").start("--max-file-bytes", "1000")
    side.ready()
    health = side.wait_http("/health", 200)
    body = health.json()
    assert health.headers["content-type"] == "application/json"
    assert (body["status"], body["database"], body["component"]) == (
        "ok",
        "postgresql",
        "waha-sync",
    )
    assert ISO_Z.match(body["timestamp"])
    # One shape whether media syncs or not: media is there, zeros and "enabled": false.
    assert body["data"] == {
        "sessions": {"count": 2, "total_size_bytes": stored_bytes},
        "media": {"count": 0, "total_size_bytes": 0, "enabled": False},
    }
    assert side.get("/livez").json()["status"] == "ok"
    assert "no API key set: /status and /metrics and / open" in side.log()

    status = side.get("/status").json()
    tree = status["trees"][0]
    assert status["ready"] is True and status["version"] and status["uptime_seconds"] >= 0
    assert tree["database"]["kind"] == "postgresql" and tree["database"]["tls"] is False
    assert tree["database"]["version"].startswith("PostgreSQL ")
    assert (tree["lease"]["epoch"], tree["lease"]["stored_epoch"]) == (1, 1)
    assert tree["restore"]["source"] == "restore" and tree["restore"]["seconds"] >= 0
    assert tree["stored"] == {"files": 4, "bytes": stored_bytes}
    assert tree["local"]["files"] == 4
    assert tree["pending"] == 0 and tree["last_commit"]["files"] == 4
    by_name = {s["name"]: s for s in tree["sessions"]}
    assert set(by_name) == {"noweb/default", "noweb/work"}
    assert (by_name["noweb/default"]["files"], by_name["noweb/work"]["skipped"]) == (2, 1)
    assert ISO_Z.match(by_name["noweb/default"]["last_change"])
    assert tree["other_files"]["files"] == 1  # noweb/waha.json belongs to no session
    assert tree["skipped"] == [{"path": "noweb/work/big.json", "reason": "2.9 KiB > limit 1000 B"}]

    (root / "noweb/work/pre-key-2.json").write_text('{"k": 2}')
    side.wait_for("shipped 1 changed path:")
    time.sleep(2.5)  # the next health check
    m = _metrics(side)
    assert m["waha_sync_commits_total{tree=sessions}"] == 2
    assert m["waha_sync_files_shipped_total{tree=sessions}"] == 5
    assert m["waha_sync_change_to_durable_seconds_count{tree=sessions}"] == 1
    assert m["waha_sync_skipped_files{reason=too_big,tree=sessions}"] == 1
    assert m["waha_sync_errors_total{kind=database,tree=sessions}"] == 0
    assert m["waha_sync_database_up{tree=sessions}"] == 1
    assert m["waha_sync_fenced{tree=sessions}"] == 0
    assert m["waha_sync_sessions{tree=sessions}"] == 2
    assert m["waha_sync_restore_files{tree=sessions}"] == 0
    assert m["waha_sync_last_commit_timestamp_seconds{tree=sessions}"] > time.time() - 60
    after = side.get("/status").json()["trees"][0]
    assert (after["local"]["files"], after["stored"]["files"]) == (5, 5)  # followed per batch
    page = side.get("/")
    assert page.status == 200 and b"<title>waha-sync" in page.body.lower()
    assert "default-src 'none'" in page.headers["content-security-policy"]

    (root / ".waha-sync/restored.json").unlink()  # the volume lost its proof of restore
    gone = side.wait_http("/health", 503, timeout=10).json()
    assert gone["status"] == "error" and "no restore marker" in gone["error"]
    assert side.get("/livez").status == 200
    side.kill()


@pytest.mark.parametrize(
    ("variable", "configured"),
    [
        ("WAHA_SYNC_API_KEY", KEY),
        ("WAHA_API_KEY", "sha512:" + hashlib.sha512(KEY.encode()).hexdigest()),
        ("WHATSAPP_API_KEY", KEY),
    ],
)
def test_api_key_guards_status_metrics_and_dashboard(
    plain_db: DbTarget, tmp_path: Path, variable: str, configured: str
) -> None:
    root = _restored(plain_db, tmp_path / "vol")
    side = SidecarProc(plain_db, root, tmp_path / "side.log", **{variable: configured})
    side.start().ready()
    assert side.wait_http("/health", 200).json()["status"] == "ok"
    assert side.get("/livez").status == 200
    for path in ("/status", "/metrics", "/"):
        for headers in ({}, {"X_Api_Key": "wrong"}, {"X_Api_Key": configured + "x"}):
            denied = side.get(path, **headers)
            assert denied.status == 401, (path, headers)
            assert denied.headers["www-authenticate"].startswith("Basic ")
            assert KEY.encode() not in denied.body and configured.encode() not in denied.body
        assert side.get(path, X_Api_Key=KEY).status == 200, path
        assert side.get(path, Authorization=_basic("anyone", KEY)).status == 200, path
    if configured != KEY:  # the hash itself is not the key
        assert side.get("/status", X_Api_Key=configured).status == 401
    assert "no API key set" not in side.log()
    side.stop_ok()
    assert KEY not in side.log() and configured not in side.log()


def test_dashboard_password_and_excluded_paths(plain_db: DbTarget, tmp_path: Path) -> None:
    root = _restored(plain_db, tmp_path / "vol")
    env = {
        "WAHA_DASHBOARD_USERNAME": "admin",
        "WAHA_DASHBOARD_PASSWORD": "pa55-word-x",
        "WAHA_SYNC_API_KEY": KEY,
        "WAHA_SYNC_API_KEY_EXCLUDE_PATH": "health,livez,metrics",
    }
    side = SidecarProc(plain_db, root, tmp_path / "side.log", **env).start().ready()
    side.wait_http("/health", 200)
    assert side.get("/metrics").status == 200  # excluded: Prometheus scrapes without a key
    for path in ("/", "/status"):
        assert side.get(path).status == 401
        assert side.get(path, Authorization=_basic("admin", "wrong")).status == 401
        assert side.get(path, Authorization=_basic("root", "pa55-word-x")).status == 401
        assert side.get(path, Authorization=_basic("admin", "pa55-word-x")).status == 200
        for bad in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer x"):
            assert side.get(path, Authorization=bad).status == 401  # malformed: denied, no 500
    side.stop_ok()
    assert "pa55-word-x" not in side.log()


def test_health_follows_the_database_down_and_back(
    stoppable_db: tuple[LocalPostgres, DbTarget], tmp_path: Path
) -> None:
    local, db = stoppable_db
    root = _restored(db, tmp_path / "vol")
    env = {"WAHA_SYNC_UNHEALTHY_AFTER_SECONDS": "2"}
    side = SidecarProc(db, root, tmp_path / "side.log", **env).start().ready()
    side.wait_http("/health", 200)
    local.stop()
    down = side.wait_http("/health", 503, timeout=15).json()
    assert down["status"] == "error" and "database unreachable" in down["error"]
    (root / "written-during-outage.json").write_text('{"kept": true}')
    side.wait_for("cannot sync")
    started = time.monotonic()
    assert side.get("/livez").status == 200  # liveness must not restart the pod for this
    assert side.get("/status").json()["trees"][0]["database"]["up"] is False
    assert time.monotonic() - started < 1.0  # answered from memory, no database wait
    time.sleep(2.5)
    assert _metrics(side)["waha_sync_database_up{tree=sessions}"] == 0
    local.start()
    side.wait_for("syncing again after")
    assert side.wait_http("/health", 200, timeout=15).json()["status"] == "ok"
    errors = side.get("/status").json()["trees"][0]["recent_errors"]
    assert errors and errors[0]["kind"] == "database"
    side.stop_ok()


def test_health_is_503_once_another_pod_claims_the_instance(db: DbTarget, tmp_path: Path) -> None:
    first = _restored(db, tmp_path / "pod1")
    side = SidecarProc(db, first, tmp_path / "pod1.log").start().ready()
    side.wait_http("/health", 200)
    _restored(db, tmp_path / "pod2")  # epoch 2; pod 1 is idle, yet its health must say so
    fenced = side.wait_http("/health", 503, timeout=10).json()
    assert "fenced: instance default was claimed by" in fenced["error"]
    assert fenced["error"].endswith("(epoch 2); this sidecar holds epoch 1")  # one wording
    assert _metrics(side)["waha_sync_fenced{tree=sessions}"] == 1
    (first / "late.json").write_text("{}")
    assert side.wait(30) == 1


def test_a_port_in_use_is_a_config_error(plain_db: DbTarget, tmp_path: Path) -> None:
    root = _restored(plain_db, tmp_path / "vol")
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port))  # noqa: S104 - where the sidecar listens
        taken.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "waha_sync.cli", "sidecar", "--sessions-dir", str(root)],
            env=plain_db.env(WAHA_SYNC_PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 2, proc.stderr
    assert f"port: cannot listen on 0.0.0.0:{port} (Address already in use)" in proc.stderr
    assert "Try: --port" in proc.stderr and "Traceback" not in proc.stderr
