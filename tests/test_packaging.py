"""The installed package: one namespace, one command, nothing generic in site-packages."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import waha_sync


def test_only_the_waha_sync_namespace_is_importable() -> None:
    for generic in ("common", "init", "sidecar", "cli"):
        spec = importlib.util.find_spec(generic)
        assert spec is None or "waha_sync" not in str(spec.origin), generic
    for sub in ("waha_sync.common.store", "waha_sync.init.restore", "waha_sync.sidecar"):
        assert importlib.util.find_spec(sub) is not None, sub


def test_console_script_and_module_agree() -> None:
    exe = str(Path(sys.executable).parent / "waha-sync")
    script = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    module = subprocess.run(
        [sys.executable, "-m", "waha_sync", "--version"], capture_output=True, text=True, check=True
    )
    assert script.stdout == module.stdout == f"waha-sync {waha_sync.__version__}\n"
