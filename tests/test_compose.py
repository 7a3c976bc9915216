"""deploy/compose.yaml, read by the real Compose parser (``docker-compose config``).

Each test asserts on the resolved model Compose would run: services per profile, the shared
sessions volume, start order, health checks, ports, and that WAHA never sees a database URL.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.composefiles import compose_bin
from tests.support.k8sfiles import env_names
from waha_sync.cli import __version__

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "deploy" / "compose.yaml"
ENV_EXAMPLE = REPO / "deploy" / ".env.example"
SESSIONS = "/app/.sessions"
OURS = ("restore", "sidecar")
URLISH = re.compile(r"postgres(ql)?://", re.IGNORECASE)
HEALTHY = {"condition": "service_healthy", "required": False}

Model = dict[str, Any]


def run_config(*extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # A clean environment: the developer's own WAHA_* or COMPOSE_* must not leak in.
    base = {"PATH": "/usr/bin:/bin", "HOME": str(REPO)} | (env or {})
    cmd = [compose_bin(), "-f", str(COMPOSE), *extra, "config", "--format", "json"]
    return subprocess.run(cmd, capture_output=True, text=True, env=base, cwd=REPO)


def config(*profiles: str, env: dict[str, str] | None = None) -> Model:
    flags = ["--env-file", str(ENV_EXAMPLE)] + [f for p in profiles for f in ("--profile", p)]
    out = run_config(*flags, env=env)
    assert out.returncode == 0, f"docker-compose config {profiles} failed:\n{out.stderr}"
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def env_example() -> dict[str, str]:
    """Assignments of .env.example, each of which must sit right under a comment line."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    found: dict[str, str] = {}
    for at, line in enumerate(lines):
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            assert at > 0 and lines[at - 1].startswith("# "), f"{name} has no comment above it"
            found[name] = value
    return found


def seconds(duration: str) -> float:
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert parts and duration, duration
    return int(parts.group(1) or 0) * 60 + float(parts.group(2) or 0)


@pytest.mark.parametrize(
    ("profiles", "database"), [((), "cockroachdb"), (("postgres",), "postgres")]
)
def test_profiles_pick_one_database(profiles: tuple[str, ...], database: str) -> None:
    services = config(*profiles)["services"]
    assert set(services) == {database, "restore", "sidecar", "waha"}
    health = services[database]["healthcheck"]["test"]
    assert health[0] == "CMD" and ("SELECT 1" in health or "pg_isready" in health)
    for name in OURS:
        assert services[name]["depends_on"][database] == HEALTHY


def test_no_profile_runs_no_database_for_an_external_url() -> None:
    services = config(env={"COMPOSE_PROFILES": ""})["services"]
    assert set(services) == {"restore", "sidecar", "waha"}


def test_one_sessions_volume_in_the_three_services() -> None:
    services = config()["services"]
    sources = set()
    for name in ("restore", "sidecar", "waha"):
        mounts = [m for m in services[name]["volumes"] if m["target"] == SESSIONS]
        assert len(mounts) == 1 and mounts[0]["type"] == "volume", name
        sources.add(mounts[0]["source"])
        assert services[name]["user"] == "1000:1000", name
    assert sources == {"sessions"}
    assert all(SESSIONS not in str(s.get("volumes")) for s in [services["cockroachdb"]])


def test_start_order() -> None:
    services = config()["services"]
    done = {"condition": "service_completed_successfully", "required": True}
    assert services["waha"]["depends_on"]["restore"] == done
    assert services["waha"]["depends_on"]["sidecar"]["condition"] == "service_healthy"
    assert services["sidecar"]["depends_on"]["restore"] == done
    assert services["restore"]["restart"] == "no"


def test_sidecar_health_ports_and_shutdown_budget() -> None:
    services = config()["services"]
    sidecar, waha = services["sidecar"], services["waha"]
    assert "http://127.0.0.1:3001/health" in " ".join(sidecar["healthcheck"]["test"])
    assert [(p["target"], p["published"]) for p in sidecar["ports"]] == [(3001, "3001")]
    assert [(p["target"], p["published"]) for p in waha["ports"]] == [(3000, "3000")]
    flush = int(sidecar["environment"]["WAHA_SYNC_SHUTDOWN_TIMEOUT_SECONDS"])
    assert seconds(sidecar["stop_grace_period"]) > flush


def test_images_build_from_the_repository() -> None:
    services = config()["services"]
    for name, dockerfile, image in [
        ("restore", "Dockerfile.init", "waha-sync-init"),
        ("sidecar", "Dockerfile.sidecar", "waha-sync-sidecar"),
    ]:
        build = services[name]["build"]
        assert Path(build["context"]).resolve() == REPO and build["dockerfile"] == dockerfile
        assert (REPO / dockerfile).is_file(), dockerfile
        assert services[name]["image"] == f"{image}:{__version__}"
    for service in services.values():
        assert not service["image"].endswith(":latest") and ":" in service["image"]


@pytest.mark.parametrize("profiles", [(), ("postgres",)])
def test_database_url_reaches_only_waha_sync(profiles: tuple[str, ...]) -> None:
    # Even URLs in the caller's shell must not end up in WAHA's environment.
    leaked = {
        "WHATSAPP_SESSIONS_POSTGRESQL_URL": "postgres://x@y/z",
        "DATABASE_URL": "postgres://q",
    }
    services = config(*profiles, env=leaked)["services"]
    waha = services["waha"]["environment"]
    assert waha["WHATSAPP_DEFAULT_ENGINE"] == "GOWS"
    assert {"WAHA_API_KEY", "WAHA_DASHBOARD_USERNAME", "WAHA_DASHBOARD_PASSWORD"} <= set(waha)
    for key, value in waha.items():
        assert "DATABASE_URL" not in key and "POSTGRESQL_URL" not in key, key
        assert not URLISH.search(value or ""), key
    example = env_example()
    for name in OURS:
        env = services[name]["environment"]
        assert env["WAHA_SYNC_DATABASE_URL"] == example["WAHA_SYNC_DATABASE_URL"]
        assert env["WAHA_SYNC_SESSIONS_DIR"] == SESSIONS
        assert set(env) <= env_names(), set(env) - env_names()
    assert services["sidecar"]["environment"]["WAHA_API_KEY"] == example["WAHA_API_KEY"]


def test_default_url_names_the_cockroachdb_service() -> None:
    url = env_example()["WAHA_SYNC_DATABASE_URL"]
    host, port = re.match(r"postgresql://\w+@([\w-]+):(\d+)/", url).groups()  # type: ignore[union-attr]
    assert (host, port) == ("cockroachdb", "26257")
    assert host in config()["services"]


def test_env_example_documents_every_variable() -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    listed = env_example()
    assert used - set(listed) == set(), "used in compose.yaml but missing from .env.example"
    assert set(listed) - used == {"COMPOSE_PROFILES"}, "listed but unused"
    assert listed["COMPOSE_PROFILES"] == "cockroachdb"


def test_missing_secrets_stop_compose_with_a_hint() -> None:
    out = run_config()
    assert out.returncode != 0
    # Compose names the first missing variable it meets, in no fixed order (about one run in
    # ten it is WAHA_API_KEY): each required one carries a hint to deploy/.env.
    assert "required variable" in out.stderr and "deploy/.env" in out.stderr, out.stderr
    if "WAHA_SYNC_DATABASE_URL" in out.stderr:
        assert ".env.example" in out.stderr
