"""SQLSTATE codes: reading one from a pg8000 error, and the codes waha-sync acts on."""

from __future__ import annotations

from pg8000.exceptions import DatabaseError

SERIALIZATION_FAILURE = "40001"  # CockroachDB's (and SERIALIZABLE PostgreSQL's) "run it again"
DEADLOCK = "40P01"
RETRYABLE = frozenset({SERIALIZATION_FAILURE, DEADLOCK})


def sqlstate(exc: BaseException) -> str | None:
    """The five-character SQLSTATE of a pg8000 database error; None for any other exception
    (or an error the server sent without one)."""
    if isinstance(exc, DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        code = exc.args[0].get("C")
        return str(code) if code else None
    return None
