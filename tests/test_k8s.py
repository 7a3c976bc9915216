"""Kubernetes manifests in deploy/k8s: real kustomize builds, offline schema checks, wiring.

Every overlay is built with ``kubectl kustomize`` and every object validated with
kubernetes-validate (strict) against the 1.29 and 1.33 schemas. The assertions then read
the rendered objects: what a cluster would get, not the source files.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.k8sfiles import (
    BASE,
    CRDB,
    K8S,
    MEDIA,
    MI,
    NO_NATIVE,
    OURS,
    OVERLAYS,
    SESSIONS,
    URLISH,
    container,
    env_names,
    mem,
    obj,
    pod,
    render,
    validate,
)
from waha_sync.cli import __version__


@pytest.mark.parametrize("overlay", list(OVERLAYS))
@pytest.mark.parametrize("version", ["1.29.0", "1.33.0"])
def test_every_object_validates_strictly(overlay: str, version: str, tmp_path: Path) -> None:
    text, objects = render(overlay)
    assert {o["kind"] for o in objects} >= {"Secret", "ConfigMap", "Deployment", "Service"}
    result = validate(text, version, tmp_path)
    assert result.returncode == 0, f"{overlay} @ {version}:\n{result.stdout}{result.stderr}"


def test_only_the_no_native_overlay_fits_older_clusters(tmp_path: Path) -> None:
    """Native sidecars (alpha in 1.28, on by default from 1.29) are unknown to the 1.27 schema."""
    assert validate(render(NO_NATIVE)[0], "1.27.0", tmp_path).returncode == 0
    base = validate(render(BASE)[0], "1.27.0", tmp_path)
    assert base.returncode != 0 and "restartPolicy" in base.stdout + base.stderr


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_one_pod_recreated_never_rolled(overlay: str) -> None:
    spec = obj(overlay, "Deployment", "waha")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    source = (K8S / "base" / "deployment.yaml").read_text().splitlines()
    for key in ("replicas: 1", "type: Recreate", "terminationGracePeriodSeconds:", "fsGroup:"):
        at = next(i for i, line in enumerate(source) if line.strip().startswith(key))
        assert source[at - 1].strip().startswith("#"), f"{key} is not commented"


def test_native_sidecar_order_and_probes() -> None:
    spec = pod(BASE)
    assert [c["name"] for c in spec["initContainers"]] == ["restore", "sidecar"]
    assert [c["name"] for c in spec["containers"]] == ["waha"]
    restore, sidecar = spec["initContainers"]
    assert "restartPolicy" not in restore
    assert sidecar["restartPolicy"] == "Always"
    assert restore["image"] == f"waha-sync-init:{__version__}"
    assert sidecar["image"] == f"waha-sync-sidecar:{__version__}"
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert ports == {"sync-http": 3001}
    probes = {k: sidecar[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {k: (v["path"], ports[v["port"]]) for k, v in probes.items()} == {
        "startupProbe": ("/health", 3001),
        "readinessProbe": ("/health", 3001),
        "livenessProbe": ("/livez", 3001),
    }
    # /livez tolerates 180 s of stall by itself; the probe must not add a hair trigger.
    live = sidecar["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 60
    waha = container(spec, "waha")
    assert {p["name"]: p["containerPort"] for p in waha["ports"]} == {"http": 3000}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert waha[kind]["httpGet"] == {"path": "/ping", "port": "http"}


def test_no_native_overlay_runs_the_sidecar_beside_waha() -> None:
    base, spec = pod(BASE), pod(NO_NATIVE)
    assert [c["name"] for c in spec["initContainers"]] == ["restore"]
    assert [c["name"] for c in spec["containers"]] == ["waha", "sidecar"]
    sidecar = container(spec, "sidecar")
    assert "restartPolicy" not in sidecar
    pre_stop = sidecar.pop("lifecycle")["preStop"]["exec"]["command"]
    assert {k: v for k, v in container(base, "sidecar").items() if k != "restartPolicy"} == sidecar
    assert re.search(r"sleep\((\d+)\)", " ".join(pre_stop)), pre_stop


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_grace_period_outlasts_the_final_flush(overlay: str) -> None:
    config = obj(overlay, "ConfigMap", "waha-sync-config")["data"]
    flush = int(config.get("WAHA_SYNC_SHUTDOWN_TIMEOUT_SECONDS", 20))
    spec = pod(overlay)
    sidecar = container(spec, "sidecar")
    pre_stop = sidecar.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    held = re.search(r"sleep\((\d+)\)", " ".join(pre_stop))
    before_sigterm = int(held.group(1)) if held else 0
    assert spec["terminationGracePeriodSeconds"] > before_sigterm + flush


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_volume_and_security_wiring(overlay: str) -> None:
    spec = pod(overlay)
    volumes = {v["name"]: v for v in spec["volumes"]}
    security = spec["securityContext"]
    assert security["fsGroup"] == security["runAsUser"] == security["runAsGroup"] == 1000
    for c in spec.get("initContainers", []) + spec["containers"]:
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert "emptyDir" in volumes[mounts[SESSIONS]], c["name"]
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{c['name']}: read-only root needs /tmp"
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc.get("runAsNonRoot", security.get("runAsNonRoot")) is True, c["name"]
    every = spec["initContainers"] + spec["containers"]
    shared = {m["name"] for c in every for m in c["volumeMounts"] if m["mountPath"] == SESSIONS}
    assert len(shared) == 1 and len(every) == 3, "restore, sidecar, waha share one volume"


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_requests_and_limits_fit_a_512mb_node(overlay: str) -> None:
    spec = pod(overlay)
    sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    inits = [c for c in spec.get("initContainers", []) if c not in sidecars]
    for c in inits + sidecars + spec["containers"]:
        res = c["resources"]
        for kind in ("cpu", "memory"):
            assert kind in res["requests"] and kind in res["limits"], f"{c['name']}: {kind}"
        assert mem(res["requests"]["memory"]) <= mem(res["limits"]["memory"])
    for which in ("requests", "limits"):
        running = sum(mem(c["resources"][which]["memory"]) for c in sidecars + spec["containers"])
        peak_init = max(mem(c["resources"][which]["memory"]) for c in inits)
        assert max(running, peak_init) < 512 * MI, f"{overlay} {which}: {max(running, peak_init)}"


def waha_environment(overlay: str) -> dict[str, str]:
    """Everything WAHA's container sees as environment, resolved from the rendered objects."""
    waha = container(pod(overlay), "waha")
    env: dict[str, str] = {}
    for source in waha.get("envFrom", []):
        if "configMapRef" in source:
            env |= obj(overlay, "ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            env |= obj(overlay, "Secret", source["secretRef"]["name"])["stringData"]
    for item in waha.get("env", []):
        ref = item.get("valueFrom", {})
        assert "secretKeyRef" not in ref or ref["secretKeyRef"]["name"] != "waha-sync-database"
        env[item["name"]] = item.get("value", "")
    return env


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_database_url_never_reaches_waha(overlay: str) -> None:
    env = waha_environment(overlay)
    assert {"WAHA_API_KEY", "WAHA_DASHBOARD_USERNAME", "WAHA_DASHBOARD_PASSWORD"} <= set(env)
    assert env["WHATSAPP_DEFAULT_ENGINE"] == "GOWS"
    for key, value in env.items():
        assert "DATABASE_URL" not in key and "POSTGRESQL_URL" not in key, key
        assert not URLISH.search(value), key
    waha = container(pod(overlay), "waha")
    assert all(
        m["name"] not in ("restore-secrets", "sidecar-secrets") for m in waha["volumeMounts"]
    )


def secrets_dir(overlay: str, name: str, target: Path) -> Path:
    """Lay out a container's secret volume as the kubelet would (one file per key)."""
    volumes = {v["name"]: v for v in pod(overlay)["volumes"]}
    c = container(pod(overlay), name)
    folder = obj(overlay, "ConfigMap", "waha-sync-config")["data"]["WAHA_SYNC_SECRETS_DIR"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == folder)
    volume = volumes[mount["name"]]
    sources = volume["projected"]["sources"] if "projected" in volume else [volume]
    target.mkdir()
    for source in sources:
        secret = source["secret"]
        data = obj(overlay, "Secret", secret.get("name") or secret["secretName"])["stringData"]
        for item in secret.get("items") or [{"key": k, "path": k} for k in data]:
            (target / item["path"]).write_text(data[item["key"]])
    return target


@pytest.mark.parametrize("overlay", [BASE, CRDB])
@pytest.mark.parametrize("name", OURS)
def test_our_containers_resolve_their_settings(overlay: str, name: str, tmp_path: Path) -> None:
    """waha-sync's own loader, fed the ConfigMap and the Secret files, finds URL and keys."""
    config = obj(overlay, "ConfigMap", "waha-sync-config")["data"]
    c = container(pod(overlay), name)
    assert [s["configMapRef"]["name"] for s in c["envFrom"]] == ["waha-sync-config"]
    assert set(config) <= env_names(), set(config) - env_names()
    env = dict(config) | {"PATH": "/usr/bin:/bin"}
    env["WAHA_SYNC_SECRETS_DIR"] = str(secrets_dir(overlay, name, tmp_path / "secrets"))
    code = (
        "import json; from waha_sync.common.config.flags import load_settings as l; s = l(); "
        "v = lambda x: x.get_secret_value() if x else None; print(json.dumps({'url': "
        "v(s.database_url), 'key': v(s.api_key), 'user': s.dashboard_username, "
        "'dir': str(s.sessions_dir), 'flush': s.shutdown_timeout_seconds}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    url = obj(overlay, "Secret", "waha-sync-database")["stringData"]["WAHA_SYNC_DATABASE_URL"]
    creds = obj(overlay, "Secret", "waha-credentials")["stringData"]
    assert got["url"] == url and got["dir"] == SESSIONS
    assert got["flush"] == int(config["WAHA_SYNC_SHUTDOWN_TIMEOUT_SECONDS"])
    # Only the sidecar serves HTTP; restore gets the database URL and nothing else.
    want_key = creds["WAHA_API_KEY"] if name == "sidecar" else None
    assert (got["key"], got["user"]) == (
        want_key,
        creds["WAHA_DASHBOARD_USERNAME"] if want_key else None,
    )


def test_service_exposes_waha_and_the_dashboard() -> None:
    service = obj(BASE, "Service", "waha")["spec"]
    labels = obj(BASE, "Deployment", "waha")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    ports = {p["port"]: p["targetPort"] for p in service["ports"]}
    assert ports == {3000: "http", 3001: "sync-http"}


def test_cockroachdb_example_wires_a_reachable_database() -> None:
    url = obj(CRDB, "Secret", "waha-sync-database")["stringData"]["WAHA_SYNC_DATABASE_URL"]
    host, port = re.match(r"postgresql://\w+@([\w-]+):(\d+)/", url).groups()  # type: ignore[union-attr]
    service = obj(CRDB, "Service", host)["spec"]
    assert int(port) in {p["port"] for p in service["ports"]}
    db = obj(CRDB, "StatefulSet", "cockroachdb")["spec"]
    assert (
        db["replicas"] == 1
        and service["selector"].items() <= db["template"]["metadata"]["labels"].items()
    )
    crdb = db["template"]["spec"]["containers"][0]
    assert crdb["readinessProbe"]["httpGet"]["path"] == "/health?ready=1"
    assert "start-single-node" in crdb["command"]


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_images_are_pinned(overlay: str) -> None:
    for o in render(overlay)[1]:
        spec = o.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            name, _, tag = c["image"].rpartition(":")
            assert name and tag and tag != "latest", c["image"]


def _resolved_env(overlay: str, name: str) -> dict[str, str]:
    """A waha-sync container's environment: its ConfigMap plus env entries, refs resolved."""
    c = container(pod(overlay), name)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env |= obj(overlay, "ConfigMap", source["configMapRef"]["name"])["data"]
    for item in c.get("env", []):
        ref = item.get("valueFrom", {}).get("configMapKeyRef")
        env[item["name"]] = (
            obj(overlay, "ConfigMap", ref["name"])["data"][ref["key"]]
            if ref
            else (item.get("value", ""))
        )
    return env


def _media_check(env: dict[str, str]) -> dict[str, object]:
    """waha-sync's own loader and media check, run in that environment."""
    code = (
        "import json; from waha_sync.common.config.flags import load_settings as l; "
        "from waha_sync.common.config.settings import media_warnings as w; s = l(); "
        "print(json.dumps({'storage': s.media_storage, 'dir': str(s.media_dir), "
        "'warnings': w(s)}))"
    )
    run_env = {
        **{k: v for k, v in env.items() if k != "WAHA_SYNC_SECRETS_DIR"},
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_media_overlay_syncs_the_folder_waha_keeps_media_in() -> None:
    waha = waha_environment(MEDIA)
    assert waha["WHATSAPP_FILES_LIFETIME"] == "0"
    folder = waha["WHATSAPP_FILES_FOLDER"]
    # WAHA never gets the names it shares with waha-sync (they would switch its own storage).
    assert not {"WAHA_MEDIA_STORAGE", "WAHA_MEDIA_POSTGRESQL_URL"} & set(waha)
    waha_mounts = {m["mountPath"]: m["name"] for m in container(pod(MEDIA), "waha")["volumeMounts"]}
    for name in OURS:
        env = _resolved_env(MEDIA, name)
        assert set(env) <= env_names() | {"WHATSAPP_FILES_FOLDER", "WHATSAPP_FILES_LIFETIME"}
        got = _media_check(env)
        assert got == {"storage": "postgresql", "dir": folder, "warnings": []}, got
        mounts = {m["mountPath"]: m["name"] for m in container(pod(MEDIA), name)["volumeMounts"]}
        assert mounts[folder] == waha_mounts[folder]  # the same volume WAHA writes to
    # The check has teeth: the base's WAHA settings (media not kept) with media sync on warn.
    base = _resolved_env(BASE, "sidecar") | {"WAHA_SYNC_MEDIA_STORAGE": "postgresql"}
    base |= {k: v for k, v in waha_environment(BASE).items() if k.startswith("WHATSAPP_FILES")}
    warnings = _media_check(base)["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 1
    assert "WHATSAPP_FILES_LIFETIME=180 (WAHA's default; not set here)" in warnings[0]
