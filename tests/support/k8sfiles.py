"""The rendered Kubernetes manifests, for the tests: kustomize builds, lookups, units."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from waha_sync.common.config.settings import Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE, NO_NATIVE, CRDB = "deploy/k8s", "overlays/no-native-sidecar", "overlays/cockroachdb-example"
MEDIA = "overlays/media"
OVERLAYS = {BASE: K8S, NO_NATIVE: K8S / NO_NATIVE, CRDB: K8S / CRDB, MEDIA: K8S / MEDIA}
SESSIONS = "/app/.sessions"
OURS = ("restore", "sidecar")
URLISH = re.compile(r"postgres(ql)?://", re.IGNORECASE)
MI = 1024 * 1024

Obj = dict[str, Any]


def tool(name: str) -> str:
    """A required command-line tool: the venv's copy first, then PATH. Missing fails."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: install it (kubectl from the OS, the rest via '.[test]')")
    return found


@functools.cache
def render(overlay: str) -> tuple[str, list[Obj]]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(OVERLAYS[overlay])], capture_output=True, text=True
    )
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return out.stdout, [d for d in yaml.safe_load_all(out.stdout) if d]


def obj(overlay: str, kind: str, name: str) -> Obj:
    found = [o for o in render(overlay)[1] if (o["kind"], o["metadata"]["name"]) == (kind, name)]
    assert len(found) == 1, f"{overlay}: expected one {kind}/{name}"
    return found[0]


def pod(overlay: str) -> Obj:
    return obj(overlay, "Deployment", "waha")["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def container(spec: Obj, name: str) -> Obj:
    every = spec.get("initContainers", []) + spec["containers"]
    return next(c for c in every if c["name"] == name)


def validate(yaml_text: str, version: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml_text)
    cmd = [tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, str(rendered)]
    return subprocess.run(cmd, capture_output=True, text=True)


def env_names() -> set[str]:
    """Every environment variable waha-sync reads a setting from (compose and k8s wiring)."""
    names = {"WAHA_SYNC_SECRETS_DIR"}
    for field, info in Settings.model_fields.items():
        choices = getattr(info.validation_alias, "choices", None)
        names |= {str(c) for c in choices if c != field} if choices else set()
        names.add(f"WAHA_SYNC_{field.upper()}")
    return names


def mem(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": MI, "Gi": 1024 * MI}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)
