"""What a failed statement means, decided once, where it fails.

A request's own data can make the database refuse a statement (a NUL character PostgreSQL cannot keep, an
expression too deep or too wide for SQLite): that is the request's 400, and the store stays available to
everyone else.  Only a failure of the database or of the path to it (refused or lost connections, a full or
unreadable disk, a SQLite file locked past its busy timeout, no answer at all, a pool with no free connection)
makes the store unavailable: a 503 for that request, and the instance reports itself unready until an operation
succeeds again.  A statement the database itself cancelled for running past the store timeout is slow, not
absent: a 504 for that request alone, and the instance stays ready.  Anything else is a fault of Parley's own SQL
and is raised as it is.
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa

Fault = Literal["unavailable", "request", "slow", "other"]

# SQLSTATE classes (PostgreSQL): connection exceptions, operator intervention (shutdown, cannot connect now),
# insufficient resources (too many connections, disk full), system errors (I/O).
_PG_UNAVAILABLE = ("08", "57P", "53", "58")
# query_canceled: the server's statement timeout (set to the store timeout on every connection).
_PG_SLOW = "57014"
# Data exceptions (a value the column cannot hold: NUL, bad encoding, out of range) and program limits (a
# statement or expression too complex).
_PG_REQUEST = ("22", "54")
# SQLite's result codes for a database that cannot be reached or written, and for a statement or value too
# large for it.  (A statement that names what does not exist is Parley's bug, and stays "other".)
_SQLITE_UNAVAILABLE = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL",
                       "SQLITE_READONLY", "SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_PROTOCOL", "SQLITE_NOLFS"}
_SQLITE_REQUEST = {"SQLITE_TOOBIG", "SQLITE_RANGE", "SQLITE_MISMATCH"}
_SQLITE_REQUEST_MESSAGES = ("expression tree is too large", "too many sql variables", "parser stack overflow",
                            "pattern too complex", "string or blob too big", "too many terms in compound select",
                            "too many arguments on function", "too many columns")


# What asyncpg refuses on the client side before sending anything: the statement's own size.
_DRIVER_REQUEST_MESSAGES = ("number of query arguments cannot exceed",)


def classify(exc: BaseException) -> Fault:
    """Whose fault ``exc``, raised by running a statement, is."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return "unavailable"  # any driver error on a connection the driver found lost
    original = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    if any(m in str(original) for m in _DRIVER_REQUEST_MESSAGES):
        return "request"
    if isinstance(exc, (sa.exc.InterfaceError, sa.exc.TimeoutError, sa.exc.DisconnectionError, OSError,
                        TimeoutError)):
        return "unavailable"
    state = sqlstate(exc)
    if isinstance(state, str):
        if state == _PG_SLOW:
            return "slow"
        if state.startswith(_PG_UNAVAILABLE):
            return "unavailable"
        if state.startswith(_PG_REQUEST):
            return "request"
        return "other"
    name = getattr(original, "sqlite_errorname", None)
    if name is not None:
        if name == "SQLITE_INTERRUPT":  # a read's deadline (Database.read's progress handler)
            return "slow"
        if name in _SQLITE_UNAVAILABLE:
            return "unavailable"
        if name in _SQLITE_REQUEST or any(m in str(original).lower() for m in _SQLITE_REQUEST_MESSAGES):
            return "request"
        return "other"
    if isinstance(exc, sa.exc.OperationalError):  # a driver that says no more: assume the path to it
        return "unavailable"
    return "other"


def sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of a failed statement (the driver's error, or the one it wraps), if it has one."""
    original = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    state = getattr(original, "sqlstate", None) or getattr(getattr(original, "__cause__", None), "sqlstate", None)
    return state if isinstance(state, str) else None


def summary(exc: BaseException) -> str:
    """The database's own words, first line, for a 400 (they name no other tenant's data)."""
    original = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    text = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    return text.split("DETAIL:")[0].strip()[:200]
