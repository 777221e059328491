"""Files finished calls in the store, and keeps retrying those it refused (gevent shell).

A call's end is durable on disk before the store is asked (``runtime.call_folder``: the final
``call.json``); until the store has the record and every recording the call stays pending, and
one greenlet per process retries the pending calls with exponential backoff (1 s, doubling up to
``STORE_RETRY_MAX_S``), the store work in gevent's threadpool. A process that dies with calls
pending leaves them on disk: the next start (or another live process, see ``runtime.recovery``)
files them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, TimeoutError as PoolTimeout

from audio.recording import RecordingFile
from runtime.blocking import run_blocking
from runtime.call_folder import file_call

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
# The store is unreachable (or the pool exhausted): worth retrying. Other errors (bad data, a
# constraint) would fail the same way each time: logged, and left on disk for the next start.
STORE_DOWN = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


@dataclass
class _Pending:
    record: dict[str, Any]
    directory: Path | None
    files: list[RecordingFile] | None
    since: float  # time.monotonic() of the first failure


class CallFiler:
    """The pending calls of one process and the greenlet that retries them.

    Args:
        store: the ``CallStore``.
        in_database: ``RECORDINGS_STORE == "database"``.
        max_retry_s: longest wait between two attempts, s (``STORE_RETRY_MAX_S``).
        file: the blocking filing function (``runtime.call_folder.file_call``'s signature).
    """

    def __init__(self, store, in_database: bool, max_retry_s: float = 60.0, file: Callable = file_call) -> None:
        self.store = store
        self.in_database = in_database
        self.max_retry_s = max_retry_s
        self._file = file
        self._pending: dict[str, _Pending] = {}
        self._loop: gevent.Greenlet | None = None

    @property
    def pending(self) -> list[str]:
        """The call SIDs waiting for the store, in the order they ended."""
        return list(self._pending)

    def file(self, record: dict[str, Any], directory: Path | None, files: list[RecordingFile] | None = None) -> bool:
        """File a finished call now; on failure keep it pending and retry in the background.

        Call from a greenlet (it waits for the store in the threadpool).

        Args:
            record: the final record (``ended_at`` set), already in the folder's ``call.json``.
            directory: the call's folder, or ``None`` when it has none.
            files: the recordings ``CallRecorder.close`` returned, or ``None`` to read the folder.

        Returns:
            True if filed now, False if left pending.
        """
        call_sid = record["call_sid"]
        try:
            run_quietly(self._file, self.store, record, directory, self.in_database, files)
            return True
        except STORE_DOWN as exc:
            log.warning("call %s: could not file it (%s); pending, retrying in the background", call_sid, _short(exc))
        except Exception:  # the folder or the data, not the store's reach: retrying would fail the same way
            log.exception("call %s: could not file it (from %s); left for the next start", call_sid, directory)
            return False
        self._pending[call_sid] = _Pending(record, directory, files, time.monotonic())
        if self._loop is None or self._loop.dead:
            self._loop = gevent.spawn(self._run)
        return False

    def _run(self) -> None:
        delay_s = FIRST_RETRY_S
        while self._pending:
            gevent.sleep(delay_s)
            for call_sid, item in list(self._pending.items()):
                try:
                    run_quietly(self._file, self.store, item.record, item.directory, self.in_database, item.files)
                except STORE_DOWN as exc:
                    log.info("call %s still pending (%s); next attempt in %.0f s", call_sid, _short(exc), min(delay_s * 2, self.max_retry_s))
                    break  # the store is still down: the others would fail the same way
                except Exception:
                    log.exception("call %s: could not file it (from %s); left for the next start", call_sid, item.directory)
                    del self._pending[call_sid]
                    continue
                del self._pending[call_sid]
                log.info("call %s filed %.1f s after the store first refused it", call_sid, time.monotonic() - item.since)
            else:
                delay_s = FIRST_RETRY_S
                continue
            delay_s = min(delay_s * 2, self.max_retry_s)


def run_quietly(func: Callable, *args: Any) -> Any:
    """``run_blocking(func, *args)``, but an exception comes back to the caller only.

    gevent prints every exception raised in its threadpool to stderr with a traceback; during
    an outage the per-second saves of every call would flood the log. The callers here log
    failures themselves, once per outage.

    Raises:
        Exception: whatever ``func`` raised.
    """
    outcome = run_blocking(_catching, func, args)
    if isinstance(outcome, _Raised):
        raise outcome.error
    return outcome


@dataclass
class _Raised:
    error: Exception


def _catching(func: Callable, args: tuple) -> Any:
    try:
        return func(*args)
    except Exception as error:
        return _Raised(error)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
