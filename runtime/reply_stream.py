"""Read a streaming responder's pieces without blocking the gevent hub.

A streaming responder returns an iterator (a generator) that may block between pieces: an HTTP
read waiting for the model's next token, or CPU work. Two ways to consume it:

* **In one engine thread** (the default, safe for any code): the whole iteration runs in one
  thread and each piece is handed to the hub through ``loop.run_callback_threadsafe``. One
  thread, because under gevent's monkey-patching a socket belongs to the hub of the thread
  that opened it: a generator whose ``next()`` ran in a different pool thread each time failed
  with "Cannot switch to a different thread" as soon as it read its HTTP response again.
* **On the hub** (responders marked ``cooperative = True`` whose I/O is gevent's patched
  sockets, such as ``responders.llm``, and only when ``socket`` is monkey-patched): no thread
  at all, and an HTTP client's keep-alive connections can be shared by every call, since they
  all live on the one hub.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import gevent
from gevent.monkey import is_module_patched
from gevent.queue import Empty, Queue

from runtime.blocking import spawn_engine

END = object()  # what ``next_piece`` returns once the iterator is exhausted
_PIECE, _ERROR = "piece", "error"


def is_reply_stream(reply: object) -> bool:
    """A streaming responder's result: an iterable of text pieces (a generator), not a string, nor a
    list or tuple (a whole reply of texts and prompts, ``core.sentences.split_reply``)."""
    return reply is not None and not isinstance(reply, (str, bytes, list, tuple)) and hasattr(reply, "__iter__")


def open_reply_stream(pieces: Iterable, responder: object) -> "ThreadedStream | HubStream":
    """Wrap ``pieces`` for reading from a greenlet: on the hub if ``responder`` is cooperative."""
    if getattr(responder, "cooperative", False) is True and is_module_patched("socket"):
        return HubStream(iter(pieces))
    return ThreadedStream(iter(pieces))


class HubStream:
    """Iterate on the calling greenlet; each ``next()`` may wait on patched sockets."""

    def __init__(self, iterator: Iterator) -> None:
        self._iterator = iterator

    def next_piece(self, timeout_s: float) -> Any:
        """The next piece, or ``END``.

        Raises:
            TimeoutError: no piece within ``timeout_s`` (the iterator is abandoned).
            Exception: whatever the iterator raised.
        """
        with gevent.Timeout(timeout_s, TimeoutError):
            return next(self._iterator, END)

    def close(self) -> None:
        """Stop early: close the generator (its ``finally`` closes the HTTP response)."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            try:
                close()
            except ValueError:  # "generator already executing": a timeout left it mid-read; it ends with the greenlet
                pass


class ThreadedStream:
    """Iterate in one engine thread; pieces come back to the hub through a queue."""

    def __init__(self, iterator: Iterator) -> None:
        self._queue: Queue = Queue()
        self._loop = gevent.get_hub().loop
        self._stopped = False  # set on the hub, read by the thread between pieces (an atomic attribute write)
        spawn_engine(self._pump, iterator)

    def next_piece(self, timeout_s: float) -> Any:
        """The next piece, or ``END``.

        Raises:
            TimeoutError: no piece within ``timeout_s`` (the thread stops at its next piece).
            Exception: whatever the iterator raised.
        """
        try:
            kind, value = self._queue.get(timeout=timeout_s)
        except Empty:
            self._stopped = True
            raise TimeoutError(f"no piece within {timeout_s} s") from None
        if kind == _ERROR:
            raise value
        return value

    def close(self) -> None:
        """Stop early: the thread closes the iterator after the piece it is waiting for."""
        self._stopped = True

    def _pump(self, iterator: Iterator) -> None:  # runs in the engine thread
        try:
            for piece in iterator:
                if self._stopped:
                    return
                self._deliver(_PIECE, piece)
            self._deliver(_PIECE, END)
        except Exception as exc:
            self._deliver(_ERROR, exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # in the thread that ran it

    def _deliver(self, kind: str, value: Any) -> None:
        self._loop.run_callback_threadsafe(self._queue.put, (kind, value))
