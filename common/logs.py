"""Logging, configured once per process.

Components log through ``waha_sync.<component>`` loggers and every line is
prefixed with the component in brackets (``[RESTORE]``, ``[SYNC]``,
``[HTTP]``). Text lines go to stderr as ``[SYNC] message``; JSON lines carry
``time``, ``level``, ``component``, ``tree`` and ``instance`` (on lines logged
for one tree: inside ``log_fields`` or with ``extra=``) and ``message``. A warning or error line
reads ``[SYNC] error: ...`` unless it was logged with ``extra={"plain": True}``
(a message that names its own state, such as ``fenced: ...``). Every registered secret is
replaced by ``***`` in whatever is logged, as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

COMPONENTS = {"restore": "RESTORE", "sync": "SYNC", "http": "HTTP", "cli": "CLI"}
FIELDS = ("tree", "instance")  # structured fields of a JSON line, when known
_secrets: set[str] = set()
_fields: ContextVar[dict[str, str]] = ContextVar("waha_sync_log_fields", default={})  # noqa: B039 - never mutated


@contextmanager
def log_fields(*, tree: str, instance: str) -> Iterator[None]:
    """Every line logged in this thread (or task) meanwhile names ``tree`` (``sessions`` or
    ``media``) and ``instance``: as JSON fields; text lines are unchanged."""
    token = _fields.set({"tree": tree, "instance": instance})
    try:
        yield
    finally:
        _fields.reset(token)


class _ContextFields(logging.Filter):
    """Copies the fields of the surrounding ``log_fields`` onto each record (``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _fields.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def register_secret(value: str | None) -> None:
    """Never let ``value`` appear in a log line (short values are ignored)."""
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


# C0 and C1 control characters and DEL: a file name may hold any of them (a terminal escape,
# a newline that forges a log line). The newline before a ``Try:`` hint is the only one kept.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\n``, ``\\x1b``) so a line
    stays one line and a name can never drive the terminal; a newline that starts a
    ``Try:`` hint stays."""

    def shown(m: re.Match[str]) -> str:
        char = m.group()
        if char == "\n":
            return char if text.startswith("Try: ", m.end()) else "\\n"
        return "\\r" if char == "\r" else f"\\x{ord(char):02x}"

    return _CONTROL.sub(shown, text)


def _tag(record: logging.LogRecord) -> str:
    return COMPONENTS.get(record.name.rpartition(".")[2], "WAHA-SYNC")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        plain = record.levelno < logging.WARNING or getattr(record, "plain", False)
        level = "" if plain else f"{record.levelname.lower()}: "
        return scrub(f"[{_tag(record)}] {level}{printable(record.getMessage())}")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "component": _tag(record),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        line["message"] = record.getMessage()
        return scrub(json.dumps(line, ensure_ascii=False))


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send waha-sync's logs to stderr in ``fmt`` (text or json); safe to call again."""
    root = logging.getLogger("waha_sync")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFields())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
