"""The installed package: one namespace, one command, nothing generic in site-packages."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from waha_sync.cli import __version__


def test_only_the_waha_sync_namespace_is_importable() -> None:
    for generic in ("common", "init", "sidecar", "cli"):
        spec = importlib.util.find_spec(generic)
        assert spec is None or "waha_sync" not in str(spec.origin), generic
    for sub in ("waha_sync.common.store.base", "waha_sync.init.restore", "waha_sync.sidecar"):
        assert importlib.util.find_spec(sub) is not None, sub


def test_console_script_and_module_agree() -> None:
    exe = str(Path(sys.executable).parent / "waha-sync")
    script = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    module = subprocess.run(
        [sys.executable, "-m", "waha_sync.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert script.stdout == module.stdout == f"waha-sync {__version__}\n"


def test_import_paths_name_their_folders() -> None:
    """Every source file imports as ``waha_sync.<its folders>.<its name>``, and nothing else."""
    repo = Path(__file__).resolve().parents[1]
    for top in ("cli", "common", "init", "sidecar"):
        for source in sorted((repo / top).rglob("*.py")):
            rel = source.relative_to(repo).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            name = ".".join(("waha_sync", *parts))
            spec = importlib.util.find_spec(name)
            assert spec is not None and spec.origin is not None, name
            installed = Path(spec.origin)
            assert installed.parts[-len(rel.parts) :] == source.relative_to(repo).parts, name
