"""Counted nouns for user messages: ``1 file``, ``2 files``, ``1 process``, ``3 processes``."""

from __future__ import annotations

_IRREGULAR = {"process": "processes", "was": "were", "is": "are"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless ``count`` is exactly 1.

    ``many`` overrides the plural form; a multi-word noun (``changed path``) puts
    its last word in the plural.
    """
    if count == 1:
        return f"{count} {noun}"
    if many is None:
        head, _, last = noun.rpartition(" ")
        many = (head + " " if head else "") + _IRREGULAR.get(last, last + "s")
    return f"{count} {many}"
