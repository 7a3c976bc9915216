"""A Docker engine of the tests' own, and the images it needs, built from Debian packages only.

``Engine`` starts Debian's ``dockerd`` on a socket, data root and exec root inside one folder,
with no bridge, no iptables rules and no IP forwarding: every container runs on the host network
and its servers listen on 127.0.0.1. ``stop()`` ends the daemon and removes the folder.

No image registry can be reached, so the base images the Dockerfiles name are stand-ins: a
``debootstrap --variant=minbase`` of Debian bookworm from the mirror this machine's apt sources
name (read at run time), imported with ``docker import``, plus Debian packages installed by the
Dockerfiles under ``standins/``. Each stand-in is saved (``docker save``) in a cache folder
outside the repository, keyed by a hash of its recipe, and loaded from there on later runs:

- ``python:<PYTHON_VERSION>-slim-bookworm``: Debian's python3 (3.11) and python3-venv, with
  ``/usr/local/bin/python3`` linking Debian's (the official image's path);
- ``postgres:17.6``: Debian's ``postgresql`` (15) behind an entrypoint taking the official
  image's ``POSTGRES_USER``/``POSTGRES_DB``/``POSTGRES_PASSWORD`` and ``PGDATA``; ``PGPORT``
  sets the port, ``listen_addresses`` is 127.0.0.1;
- the WAHA stand-in under WAHA's image name: Debian's Node and tini, the real Baileys 6 of
  ``tests/realclient`` (its installed ``node_modules``), and ``standins/waha/server.mjs``.

CockroachDB has no Debian package and its image cannot be pulled: no stand-in exists for it.
The cache folder is ``$WAHA_SYNC_TEST_CACHE``, else ``$XDG_CACHE_HOME/waha-sync-tests``, else
``~/.cache/waha-sync-tests``. No pytest import here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STANDINS = HERE / "standins"
REALCLIENT = HERE.parent / "realclient"
SUITE = "bookworm"
MINBASE = f"waha-sync-test/minbase:{SUITE}"
NODE_BASE = f"waha-sync-test/node:{SUITE}"
POSTGRES_IMAGE = "postgres:17.6"
WHEELHOUSE = REPO / "deploy" / "images" / "wheelhouse"


class EngineError(RuntimeError):
    """A docker, dockerd or debootstrap step failed; the message carries its output tail."""


def cache_dir() -> Path:
    """The folder stand-in images and the wheelhouse are kept in between runs (created)."""
    explicit = os.environ.get("WAHA_SYNC_TEST_CACHE")
    if explicit:
        path = Path(explicit)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (Path(xdg) if xdg else Path.home() / ".cache") / "waha-sync-tests"
    path.mkdir(parents=True, exist_ok=True)
    return path


_held = [0]  # how deep this process is inside cache_lock (it is re-entered)


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """Hold the cache folder's lock: two runs never fill the same entry at once. Re-entrant
    within one process (flock would block on a second open of the same file)."""
    if _held[0]:
        _held[0] += 1
        try:
            yield
        finally:
            _held[0] -= 1
        return
    with (cache_dir() / ".lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        _held[0] = 1
        try:
            yield
        finally:
            _held[0] = 0
            fcntl.flock(f, fcntl.LOCK_UN)


def debian_mirror(sources: Sequence[Path] | None = None) -> str:
    """The Debian archive URI this machine's apt sources use for ``bookworm`` itself.

    Reads deb822 ``*.sources`` and one-line ``*.list`` files. Raises EngineError if none names
    the suite.
    """
    if sources is None:
        apt = Path("/etc/apt")
        sources = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not line.startswith((" ", "#")):
                        fields[key.strip().lower()] = value.strip()
                suites = fields.get("suites", "").split()
                enabled = fields.get("enabled", "yes").lower() != "no"
                if enabled and SUITE in suites and "deb" in fields.get("types", "").split():
                    return fields["uris"].split()[0]
        elif path.suffix == ".list" or path.name == "sources.list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                    return words[1]
    raise EngineError(
        f"apt sources: no 'deb' entry for {SUITE} (got {[str(p) for p in sources]}). "
        "Try: add Debian's bookworm archive to /etc/apt/sources.list.d"
    )


def recipe_key(*parts: Path | str) -> str:
    """A short hash of files (their bytes; a folder: every file in it) and strings."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]
            for f in files:
                h.update(str(f.relative_to(part if part.is_dir() else part.parent)).encode())
                h.update(f.read_bytes())
        else:
            h.update(part.encode())
    return h.hexdigest()[:16]


def _run(
    argv: Sequence[str],
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{' '.join(argv[:4])}: no end within {timeout} s") from exc
    if check and done.returncode != 0:
        raise EngineError(
            f"{' '.join(argv[:6])}: exit {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
        )
    return done


def _remove_folder(root: Path) -> None:
    """Unmount what a daemon left mounted below ``root`` (its network namespace file, a killed
    one's overlays), then remove ``root``."""
    prefix = f"{root}/"
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]
    for mount in sorted(mounts, key=len, reverse=True):
        _run(["umount", "-l", mount], 30, check=False)
    shutil.rmtree(root, ignore_errors=True)


def _remove_abandoned() -> None:
    """Remove the folders of test daemons that are gone (their run was killed): those whose
    pid file names no live process, or that have none (a daemon removes it as it stops) and
    were made more than an hour ago. A running daemon's folder is never touched."""
    for folder in Path("/tmp").glob("wsd-*"):
        pidfile = folder / "dockerd.pid"
        try:
            if pidfile.exists():
                os.kill(int(pidfile.read_text().strip()), 0)
            elif time.time() - folder.stat().st_mtime > 3600:
                _remove_folder(folder)
        except ProcessLookupError:
            _remove_folder(folder)
        except (ValueError, OSError):
            continue


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, even by SIGKILL, so no
    daemon outlives its run (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


class Engine:
    """One ``dockerd`` of the tests; ``docker(...)`` runs the CLI against it."""

    def __init__(self) -> None:
        _remove_abandoned()
        # Short: the daemon's unix sockets live below it (108-byte path limit).
        self.root = Path(tempfile.mkdtemp(prefix="wsd-", dir="/tmp"))
        self.sock = self.root / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "dockerd.log"
        self.times: dict[str, float] = {}

    def env(self) -> dict[str, str]:
        """The environment for ``docker`` and ``docker-compose`` talking to this daemon."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
        env.update(
            DOCKER_HOST=f"unix://{self.sock}",
            DOCKER_CONFIG=str(self.root / "client"),  # no user config, no credential helper
            DOCKER_BUILDKIT="0",  # the legacy builder: what needs no BuildKit frontend image
            DOCKER_CLI_HINTS="false",
        )
        return env

    def start(self, timeout: float = 90) -> Engine:
        """Start ``dockerd``; returns once it answers. Raises EngineError if it does not."""
        dockerd = shutil.which("dockerd")
        if dockerd is None or shutil.which("docker") is None:
            raise EngineError("dockerd: not found. Try: apt-get install docker.io (as root)")
        (self.root / "client").mkdir()
        argv = [
            dockerd,
            f"--host=unix://{self.sock}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            # No bridge, no NAT, no forwarding: containers use the host network only.
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--userland-proxy=false",
        ]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(f"dockerd exited {self.proc.returncode}:\n{self.log_tail()}")
            if self.sock.exists() and self.docker("version", check=False).returncode == 0:
                return self
            time.sleep(0.3)
        raise EngineError(f"dockerd: not answering after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def docker(
        self, *args: str, timeout: float = 120, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` against this daemon. Raises EngineError on a non-zero exit when
        ``check``."""
        return _run(["docker", *args], timeout, env=self.env(), cwd=cwd, check=check)

    def stop(self) -> None:
        """Remove every container, stop the daemon (SIGTERM, then SIGKILL) and its folder."""
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", "-v", *ids, check=False, timeout=120)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        _remove_folder(self.root)

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0

    def build(
        self,
        tag: str,
        context: Path,
        dockerfile: Path | None = None,
        build_args: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> float:
        """``docker build`` (legacy builder, host network); returns the seconds it took."""
        argv = ["build", "--network", "host", "-t", tag]
        if dockerfile is not None:
            argv += ["-f", str(dockerfile)]
        for key, value in (build_args or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        started = time.monotonic()
        self.docker(*argv, str(context), timeout=timeout)
        took = time.monotonic() - started
        self.times[f"build {tag}"] = took
        return took

    def image_size(self, name: str) -> int:
        """Bytes of an image (``docker image inspect``'s Size)."""
        return int(self.docker("image", "inspect", "-f", "{{.Size}}", name).stdout.strip())

    def cached(self, name: str, key: str, make: Callable[[], None]) -> None:
        """Load image ``name`` saved under ``key``, or ``make()`` it and save it there."""
        folder = cache_dir() / "images"
        folder.mkdir(exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9.-]", "_", name)
        tar = folder / f"{safe}-{key}.tar"
        started = time.monotonic()
        with cache_lock():
            if tar.is_file():
                self.docker("load", "-i", str(tar), timeout=300)
                self.times[f"load {name}"] = time.monotonic() - started
                return
            make()
            partial = tar.with_suffix(".partial")
            self.docker("save", "-o", str(partial), name, timeout=300)
            partial.replace(tar)
            for old in folder.glob(f"{safe}-*.tar"):
                if old != tar:
                    old.unlink()
        self.times[f"make {name}"] = time.monotonic() - started


# What Debian's own container images set up for apt: downloaded packages and the package
# lists never stay in a layer (the stand-ins' sizes are then near the real images').
_RM_DEBS = (
    "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb"
    " /var/cache/apt/*.bin || true"
)
APT_CLEAN = (
    f'DPkg::Post-Invoke {{ "{_RM_DEBS}"; }};\n'
    f'APT::Update::Post-Invoke {{ "{_RM_DEBS}"; }};\n'
    'Dir::Cache::pkgcache "";\n'
    'Dir::Cache::srcpkgcache "";\n'
)


def debootstrap_rootfs(timeout: float = 900) -> Path:
    """A ``debootstrap --variant=minbase bookworm`` root filesystem as a tar (cached), without
    apt's downloads and lists, with Debian's container apt settings (``APT_CLEAN``)."""
    tar = cache_dir() / f"minbase-{SUITE}-{recipe_key(APT_CLEAN)}.tar"
    with cache_lock():
        if tar.is_file():
            return tar
        if shutil.which("debootstrap") is None:
            raise EngineError("debootstrap: not found. Try: apt-get install debootstrap (root)")
        work = Path(tempfile.mkdtemp(prefix="wsd-root-", dir=cache_dir()))
        try:
            root = work / "root"
            _run(
                ["debootstrap", "--variant=minbase", SUITE, str(root), debian_mirror()],
                timeout,
            )
            for leftover in [
                *(root / "var/cache/apt/archives").glob("*.deb"),
                *(root / "var/lib/apt/lists").glob("*_*"),
            ]:
                leftover.unlink()
            (root / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
            partial = work / "rootfs.tar"
            _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], 300)
            partial.replace(tar)
            for old in cache_dir().glob(f"minbase-{SUITE}*.tar"):
                if old != tar:
                    old.unlink()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return tar


def prepare_base_images(engine: Engine, python_version: str, waha_image: str) -> None:
    """Make sure the daemon has every base image the Dockerfiles and compose file name."""

    def minbase() -> None:
        if not engine.has_image(MINBASE):
            started = time.monotonic()
            tar = debootstrap_rootfs()
            engine.times["debootstrap (or cached rootfs)"] = time.monotonic() - started
            engine.docker("import", str(tar), MINBASE, timeout=300)

    def python() -> None:
        minbase()
        engine.build(f"python:{python_version}-slim-{SUITE}", STANDINS / "python")

    def postgres() -> None:
        minbase()
        engine.build(POSTGRES_IMAGE, STANDINS / "postgres")

    def node() -> None:
        minbase()
        context = Path(tempfile.mkdtemp(prefix="wsd-node-", dir="/tmp"))
        try:
            shutil.copy(STANDINS / "node" / "Dockerfile", context / "Dockerfile")
            shutil.copy(REALCLIENT / "package.json", context)
            shutil.copy(REALCLIENT / "package-lock.json", context)
            shutil.copytree(REALCLIENT / "node_modules", context / "node_modules", symlinks=True)
            engine.build(NODE_BASE, context)
        finally:
            shutil.rmtree(context, ignore_errors=True)

    engine.cached(
        f"python:{python_version}-slim-{SUITE}",
        recipe_key(STANDINS / "python", SUITE, APT_CLEAN),
        python,
    )
    engine.cached(POSTGRES_IMAGE, recipe_key(STANDINS / "postgres", SUITE, APT_CLEAN), postgres)
    engine.cached(
        NODE_BASE,
        recipe_key(STANDINS / "node", REALCLIENT / "package-lock.json", SUITE, APT_CLEAN),
        node,
    )
    # The WAHA stand-in itself is small and built on every run (its server changes).
    context = Path(tempfile.mkdtemp(prefix="wsd-waha-", dir="/tmp"))
    try:
        for name in ("Dockerfile", "server.mjs", "entrypoint.sh"):
            shutil.copy(STANDINS / "waha" / name, context / name)
        shutil.copy(REALCLIENT / "noweb.mjs", context / "noweb.mjs")
        engine.build(waha_image, context, build_args={"BASE": NODE_BASE})
    finally:
        shutil.rmtree(context, ignore_errors=True)


def wheelhouse(timeout: float = 600) -> Path:
    """``deploy/images/wheelhouse``, filled by ``install.sh wheelhouse`` from the cache (the
    download is made once per lock)."""
    lock = REPO / "deploy" / "images" / "requirements.txt"
    key = recipe_key(lock, REPO / "deploy" / "images" / "install.sh")
    cached = cache_dir() / f"wheelhouse-{key}"
    with cache_lock():
        if not cached.is_dir():
            partial = cache_dir() / f"wheelhouse-{key}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            env = dict(os.environ, PYTHON=sys.executable)
            _run(
                [
                    "sh",
                    str(REPO / "deploy/images/install.sh"),
                    "wheelhouse",
                    str(partial),
                    str(lock),
                ],
                timeout,
                env=env,
            )
            partial.replace(cached)
        shutil.rmtree(WHEELHOUSE, ignore_errors=True)
        shutil.copytree(cached, WHEELHOUSE)
    return WHEELHOUSE
