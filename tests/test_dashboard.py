"""The dashboard in a real browser (the system's Chromium) against a real sidecar."""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Page, Request, sync_playwright

from tests.support.dbtarget import DbTarget
from tests.support.podsim import SidecarProc

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "admin", "dash-secret"
REPO = Path(__file__).resolve().parent.parent


def _artifacts() -> Path:
    folder = Path(os.environ.get("WAHA_SYNC_TEST_ARTIFACTS") or REPO / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write(root: Path, rel: str, body: dict[str, Any]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))


def _status(side: SidecarProc) -> dict[str, Any]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    reply = side.get("/status", Authorization=f"Basic {token}")
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


def _settled(side: SidecarProc, sessions: set[str], timeout: float = 30) -> dict[str, Any]:
    """/status once it is ready, lists ``sessions`` and has nothing pending."""
    deadline = time.monotonic() + timeout
    while True:
        body = _status(side)
        tree = body["trees"][0] if body["trees"] else {}
        names = {s["name"] for s in tree.get("sessions", [])}
        if body["ready"] and names == sessions and tree["pending"] == 0:
            return body
        assert time.monotonic() < deadline, f"status never settled: {body}"
        time.sleep(0.2)


def _chart_points(page: Page, name: str) -> list[str]:
    """The ``x,y`` points of one inline SVG chart (empty while it has no data)."""
    line = page.locator(f'#trees svg[data-chart="{name}"] polyline')
    return (line.get_attribute("points") or "").split() if line.count() else []


def _refreshes(page: Page) -> int:
    return int(page.get_attribute("body", "data-refreshes") or 0)


def test_dashboard_renders_refreshes_and_stays_on_its_origin(
    plain_db: DbTarget, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "no system Chromium: scripts/test installs Debian's chromium package"
    vol = tmp_path / "vol"
    vol.mkdir()
    assert plain_db.cli("restore", "--sessions-dir", str(vol)) == 0
    _write(vol, "noweb/default/creds.json", {"me": {"id": "4915100000000:1@s.whatsapp.net"}})
    _write(vol, "noweb/default/pre-key-1.json", {"private": "a" * 64, "public": "b" * 64})
    _write(vol, "noweb/work/creds.json", {"me": {"id": "4915200000000:2@s.whatsapp.net"}})
    _write(vol, "noweb/default/app-state-sync-key-big.json", {"pad": "x" * 1989})  # 2000 bytes
    assert (vol / "noweb/default/app-state-sync-key-big.json").stat().st_size == 2000
    side = SidecarProc(
        plain_db,
        Path(os.path.relpath(vol)),  # as typed in a terminal: the page shows it absolute
        tmp_path / "side.log",
        WAHA_SYNC_DASHBOARD_USERNAME=USER,
        WAHA_SYNC_DASHBOARD_PASSWORD=PASSWORD,
    )
    side.start("--max-file-bytes", "1000").ready()
    try:
        assert side.get("/").status == 401  # no credentials, no dashboard
        assert side.get("/status").status == 401
        body = _settled(side, {"noweb/default", "noweb/work"})
        assert body["trees"][0]["skipped_count"] == 1
        requests: list[str] = []
        errors: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(
                http_credentials={"username": USER, "password": PASSWORD},
                viewport={"width": 1280, "height": 900},
            )
            page = context.new_page()

            def on_console(msg: ConsoleMessage) -> None:
                if msg.type == "error":
                    errors.append(msg.text)

            def on_request(request: Request) -> None:
                requests.append(request.url)

            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", on_request)
            response = page.goto(side.url + "/")
            assert response is not None and response.status == 200
            assert "default-src 'none'" in response.headers["content-security-policy"]
            page.wait_for_function("Number(document.body.dataset.refreshes) >= 1")
            for name in ("noweb/default", "noweb/work"):
                row = page.locator(f'#sessions tr[data-session="{name}"]')
                assert row.count() == 1
            assert "1 skipped file" in page.inner_text("#reason")
            assert page.get_attribute("#state", "data-state") == "amber"  # the skipped file
            assert "app-state-sync-key-big.json" in page.inner_text("#skipped")
            cells = page.locator('#sessions tr[data-session="noweb/default"] td').all_inner_texts()
            assert (cells[1], cells[6], cells[7]) == ("2", "0", "1")  # files, pending, skipped
            assert page.inner_text('#trees dt:text-is("Directory") + dd') == str(vol)
            local = page.inner_text('#trees dt:text-is("Local") + dd')
            assert local.startswith("4 files (1 skipped), "), local  # 3 stored, 1 too big
            for name in ("stored", "commits"):  # the inline charts: a sample and now
                assert len(_chart_points(page, name)) >= 2, name
            assert page.locator('#trees svg[data-chart="lag"]').count() == 1
            history = body["trees"][0]["history"]
            assert history["columns"] == ["time", "stored_bytes", "commits", "lag_seconds"]
            assert history["samples"] and len(history["samples"][0]) == 4
            page.screenshot(path=str(_artifacts() / "dashboard.png"), full_page=True)

            page.evaluate("window.sameDocument = true")  # gone if the page reloads
            before = _refreshes(page)
            _write(vol, "noweb/third/creds.json", {"me": {"id": "4915300000000:3@s.whatsapp.net"}})
            page.wait_for_selector('#sessions tr[data-session="noweb/third"]', timeout=20_000)
            assert page.evaluate("window.sameDocument === true")
            assert _refreshes(page) > before
            page.wait_for_selector(
                '#trees svg[data-chart="lag"] polyline', state="attached", timeout=20_000
            )
            lag = _chart_points(page, "lag")  # a change shipped: its lag is drawn
            assert lag and all(0 <= float(p.split(",")[1]) <= 44 for p in lag), lag

            page.set_viewport_size({"width": 375, "height": 812})
            page.emulate_media(color_scheme="dark")
            page.wait_for_timeout(300)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"horizontal scroll on a phone: {width}px"
            page.screenshot(path=str(_artifacts() / "dashboard-phone.png"), full_page=True)

            origin = urlsplit(side.url)
            foreign = [u for u in requests if urlsplit(u)[:2] != origin[:2]]
            assert not foreign, foreign
            assert any(urlsplit(u).path == "/status" for u in requests)
            assert not errors, errors

            side.stop_ok()  # the page keeps the last data and turns red
            page.wait_for_selector('#state[data-state="red"]', timeout=20_000)
            assert "cannot reach the sidecar" in page.inner_text("#reason")
            assert page.locator("#sessions tr[data-session]").count() == 3
            browser.close()
    finally:
        if side.proc is not None and side.proc.poll() is None:
            side.stop_ok()
