"""Python side of ``noweb.mjs``: real Baileys writes, churns and checks NOWEB sessions.

``LINES`` are the two Baileys lines WAHA has shipped (``"6"``: @whiskeysockets/baileys 6.17.16,
``"7"``: baileys 7.0.0-rc), ``WRITERS`` the two ways WAHA writes the files (``"plain"``:
Baileys' own non-atomic ``writeFile``; ``"atomic"``: write-file-atomic, temp file then rename).
Every call runs Node in a subprocess with a timeout and returns the script's JSON. Needs the
packages of ``package.json`` installed (``ensure_installed``); no pytest import here, so bench
code may use it too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

Line = Literal["6", "7"]
Writer = Literal["plain", "atomic"]
LINES: tuple[Line, ...] = ("6", "7")
WRITERS: tuple[Writer, ...] = ("plain", "atomic")

PACKAGE = Path(__file__).resolve().parent
SCRIPT = PACKAGE / "noweb.mjs"


class NodeError(RuntimeError):
    """A Node script failed or timed out; the message carries its stderr tail."""


def node() -> str:
    """Path of the ``node`` executable. Raises NodeError if there is none."""
    found = shutil.which("node")
    if found is None:
        raise NodeError("node: not found (got PATH without node). Try: bash scripts/test")
    return found


def ensure_installed(timeout: float = 600) -> None:
    """Install the pinned packages from ``package-lock.json`` if they are missing.

    Raises NodeError if npm fails. A no-op when ``node_modules`` is already there.
    """
    if (PACKAGE / "node_modules" / ".package-lock.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise NodeError("npm: not found. Try: bash scripts/test (it installs Debian's npm)")
    done = subprocess.run(
        [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise NodeError(f"npm install: exit {done.returncode}: {done.stderr[-2000:]}")


def _run(args: list[str], timeout: float) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [node(), str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NodeError(f"noweb.mjs {args[0]}: no answer within {timeout} s") from exc
    if done.returncode != 0:
        raise NodeError(f"noweb.mjs {args[0]}: exit {done.returncode}: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def generate(
    folder: Path,
    manifest: Path,
    line: Line,
    writer: Writer = "plain",
    seed: int = 1,
    peers: int = 24,
    groups: int = 6,
    timeout: float = 180,
) -> dict[str, Any]:
    """Write a NOWEB session into ``folder`` with Baileys' own functions.

    812 pre-keys (``getNextPreKeys``), ``peers`` real libsignal sessions opened by incoming
    ``pkmsg`` (each consumes a pre-key), our sender key and three received ones in each of
    ``groups`` groups, app-state keys and versions from ``encodeSyncdPatch``; with Baileys 7
    also ``lid-mapping``, ``device-list``, ``identity-key`` and ``tctoken``. ``manifest``
    (outside the folder) keeps what ``verify`` needs: our JID and group messages still to
    be decrypted. Returns ``{"files": int, "byType": {type: int}, "peers": int, "ms": int}``.
    """
    args = ["generate", "--line", line, "--writer", writer, "--folder", str(folder)]
    args += ["--manifest", str(manifest), "--seed", str(seed)]
    args += ["--peers", str(peers), "--groups", str(groups)]
    return _run(args, timeout)


def verify(folder: Path, manifest: Path, line: Line, timeout: float = 180) -> dict[str, Any]:
    """Load ``folder`` with a fresh ``useMultiFileAuthState`` and use every key.

    Returns ``{"files", "byType", "sessions": {"total", "encrypted", "pkmsg"}, "senderKeys":
    {"total", "ownEncrypted", "receivedDecrypted", "receivedWithoutMessage"}, "appState":
    {"versions", "patched"}, "problems": [str]}``; ``problems`` is empty when every key loads
    and works.
    """
    return _run(
        ["verify", "--line", line, "--folder", str(folder), "--manifest", str(manifest)], timeout
    )


def leftover(file: Path, timeout: float = 60) -> Path:
    """Start a write-file-atomic write of ``file`` and SIGKILL the writer once its temp file
    exists. Returns the temp file a crash leaves behind (named by write-file-atomic itself)."""
    try:
        done = subprocess.run(
            [node(), str(SCRIPT), "leftover", "--file", str(file)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NodeError(f"noweb.mjs leftover: no answer within {timeout} s") from exc
    if done.returncode != -9:
        raise NodeError(
            f"noweb.mjs leftover: exit {done.returncode}, wanted SIGKILL: {done.stderr}"
        )
    return Path(json.loads(done.stdout.strip().splitlines()[-1])["tmp"])


class Churn:
    """Baileys churning a session in a Node process until ``stop()``.

    Each round is one of: ``saveCreds()`` twenty times in a tight loop (creds mutated each
    time), a new contact's ``pkmsg`` (a pre-key deleted, a session created), a message each
    way on a session, an app-state patch, or a ``keys.set`` burst (new pre-keys when fewer
    than 780 remain, sender-key memories set and deleted, a session deleted). ``stop()``
    closes the script's stdin; it finishes pending writes, writes creds once more and
    returns ``{"counts": {...}, "lastCredsSha256": hex, "lastCredsBytes": int, "files":
    [names in the folder]}``. ``kill()`` is a crash instead (SIGKILL, no report).
    """

    def __init__(
        self, folder: Path, manifest: Path, line: Line, writer: Writer = "plain", seed: int = 2
    ) -> None:
        self.args = ["churn", "--line", line, "--writer", writer, "--folder", str(folder)]
        self.args += ["--manifest", str(manifest), "--seed", str(seed)]
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60) -> Churn:
        """Start the writer; returns once it has opened the session and begun writing."""
        self.proc = subprocess.Popen(
            [node(), str(SCRIPT), *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()  # "churn: started", or an error
        if "churn: started" not in line:
            self.proc.kill()
            rest = self.proc.stderr.read()
            raise NodeError(f"noweb.mjs churn did not start: {line}{rest[-3000:]}")
        return self

    def stop(self, timeout: float = 120) -> dict[str, Any]:
        """Let the writer finish and report (see the class docstring)."""
        assert self.proc is not None
        try:
            out, err = self.proc.communicate(timeout=timeout)  # closes stdin first
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.wait(10)
            raise NodeError(f"noweb.mjs churn: did not stop within {timeout} s") from exc
        if self.proc.returncode != 0:
            raise NodeError(f"noweb.mjs churn: exit {self.proc.returncode}: {err[-3000:]}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def kill(self) -> None:
        """SIGKILL the writer (a crashed WAHA)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Churn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
