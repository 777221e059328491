"""Read a stored recording a slice at a time, and remove recording files safely (blocking).

A one-hour stereo recording is about 115 MB: reading it whole for a download or a waveform
costs that much memory per request. :class:`RecordingReader` is a seekable binary file object
(what ``soundfile`` and a streamed HTTP response need) over either the file on disk or the
``recordings.data`` column, which it reads with ``substr`` in short separate queries, so at
most one slice is held at a time.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

SLICE_BYTES = 1 << 20
"""Bytes per database query of a blob read: 1 MiB, about 460 queries for a one-hour stereo call."""


class RecordingReader(io.RawIOBase):
    """A read-only, seekable binary stream over one recording's bytes.

    Args:
        size_bytes: the recording's length, bytes.
        read_at: ``read_at(offset, size)`` returns up to ``size`` bytes from byte ``offset``.
        close_source: called once by :meth:`close` (closes the file), or ``None``.
    """

    def __init__(self, size_bytes: int, read_at: Callable[[int, int], bytes], close_source: Callable[[], None] | None = None):
        super().__init__()
        self.size_bytes = size_bytes
        self._read_at = read_at
        self._close_source = close_source
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size_bytes}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer) -> int:
        size = min(len(buffer), max(0, self.size_bytes - self._position))
        if size == 0:
            return 0
        data = self._read_at(self._position, size)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def chunks(self, chunk_bytes: int = SLICE_BYTES):
        """Yield the bytes from the current position to the end, ``chunk_bytes`` at a time."""
        while True:
            data = self.read(chunk_bytes)
            if not data:
                return
            yield data

    def close(self) -> None:
        if not self.closed and self._close_source is not None:
            self._close_source()
        super().close()


def file_reader(path: str | os.PathLike[str]) -> RecordingReader:
    """A :class:`RecordingReader` over a file (opened now, closed by ``close``).

    Raises:
        OSError: the file cannot be opened (``FileNotFoundError`` when it is gone).
    """
    handle = open(path, "rb")  # noqa: SIM115 - closed by the reader

    def read_at(offset: int, size: int) -> bytes:
        handle.seek(offset)
        return handle.read(size)

    return RecordingReader(os.fstat(handle.fileno()).st_size, read_at, handle.close)


def remove_recording_files(paths: list[str], recordings_root: str | os.PathLike[str]) -> list[str]:
    """Delete recording files, only those inside ``recordings_root``, and their call folders once empty.

    A path outside ``recordings_root`` (after resolving ``..`` and symbolic links) is left alone
    and logged: a row pointing elsewhere must never make the server delete that file. In a
    call's folder (a strict sub-folder of the root) the ``finalized`` marker goes too, then the
    folder if nothing else is left in it.

    Returns:
        The paths that were refused (outside the root). Files already gone are not errors.

    Raises:
        OSError: a file inside the root exists but cannot be deleted.
    """
    root = Path(recordings_root).resolve()
    refused: list[str] = []
    folders: set[Path] = set()
    for raw in paths:
        path = Path(raw).resolve()
        if not path.is_relative_to(root) or path == root:
            log.warning("not deleting recording file %s: it is outside RECORDINGS_DIR %s", raw, root)
            refused.append(raw)
            continue
        path.unlink(missing_ok=True)
        if path.parent != root:
            folders.add(path.parent)
    for folder in folders:
        (folder / "finalized").unlink(missing_ok=True)  # audio.recording.FINALIZED_MARKER
        try:
            folder.rmdir()
        except OSError:  # something else in it (or gone): leave it
            pass
    return refused
