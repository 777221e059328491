"""Keep one call in the store and on disk as it goes: its record and its recordings (gevent shell).

Audio is queued in memory by ``add_audio`` (cheap, on the hub); every ``FLUSH_INTERVAL_S`` a
greenlet writes it to the WAV files and saves the call record if it changed, both in gevent's
threadpool, so neither file nor database I/O blocks media handling. A crash loses at most that
interval; ``finish`` writes everything and files the recordings in the store.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from functools import partial
from pathlib import Path

import gevent
from gevent.event import Event

from audio.recording import CallRecorder, RecordingFile
from audio.stream_format import MULAW_8K, StreamFormat
from core.records import CallRecord
from handlers.blocking import run_blocking
from handlers.waveforms import save_waveform_of

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def recording_dir(recordings_root: Path, call_sid: str) -> Path:
    """The folder of one call's recordings: ``<RECORDINGS_DIR>/<call SID>`` (SID sanitized)."""
    name = _UNSAFE.sub("_", call_sid) or "unknown"
    return recordings_root / name


def file_recordings(store, call_sid: str, files: list[RecordingFile], in_database: bool) -> None:
    """Register finished recording files with the store (blocking: run it in a thread).

    In ``database`` mode the bytes go into the store and the folder is removed; otherwise the
    store keeps the file's path.
    """
    for item in files:
        if in_database:
            store.save_recording(call_sid, item.kind, duration_ms=item.duration_ms, size_bytes=item.size_bytes, data=item.path.read_bytes())
        else:
            store.save_recording(call_sid, item.kind, duration_ms=item.duration_ms, size_bytes=item.size_bytes, path=str(item.path))
    save_waveform_of(store, call_sid, files)  # drawn once, from the file, before database mode removes it
    if in_database and files:
        shutil.rmtree(files[0].path.parent, ignore_errors=True)


class CallKeeper:
    """Record and persist one call.

    Args:
        services: the process-wide store and settings.
        record: the call's live record (the session keeps filling it in).
        call_log: logger adapter with the call SID.
        stream_format: the stream's wire audio format (``start.mediaFormat``), recorded as is;
            default μ-law 8 kHz (Twilio's).
    """

    def __init__(
        self, services, record: CallRecord, call_log: logging.LoggerAdapter, stream_format: StreamFormat = MULAW_8K
    ) -> None:
        self.services = services
        self.record = record
        self.log = call_log
        self.stream_format = stream_format
        self.recorder: CallRecorder | None = None
        self._saved_json = ""
        self._loop: gevent.Greenlet | None = None
        self._stop = Event()
        self.save_latencies_ms: list[float] = []

    def start(self) -> None:
        """Create the call's recording files and start the periodic flush."""
        directory = recording_dir(Path(self.services.settings["RECORDINGS_DIR"]), self.record.call_sid)
        self.recorder = run_blocking(partial(CallRecorder, directory, stream_format=self.stream_format))
        self._save()
        self._loop = gevent.spawn(self._run)

    def add_audio(self, track: str, start_ms: int, audio: bytes) -> None:
        """Queue wire audio (``stream_format``) of ``track`` ("inbound"/"outbound") at media time ``start_ms``."""
        if self.recorder is not None:
            self.recorder.add(track, start_ms, audio)

    def finish(self) -> None:
        """Stop the periodic flush, write everything, file the recordings, save the final record."""
        if self._loop is not None:
            self._stop.set()  # not kill(): a flush running in a thread must end before close() starts
            self._loop.join(timeout=10.0)
        if self.recorder is not None:
            try:
                files = run_blocking(self.recorder.close)
                in_database = self.services.settings["RECORDINGS_STORE"] == "database"
                run_blocking(file_recordings, self.services.store, self.record.call_sid, files, in_database)
            except Exception:
                self.log.exception("could not finish the recordings")
        try:
            self._save()
        except Exception:
            self.log.exception("could not save the call")
        if self.save_latencies_ms:
            ordered = sorted(self.save_latencies_ms)
            self.log.info("store: %d saves, median %.1f ms, max %.1f ms", len(ordered), ordered[len(ordered) // 2], ordered[-1])

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            try:
                if self.recorder is not None:
                    run_blocking(self.recorder.flush)
                self._save()
            except Exception:  # a full disk or a database hiccup must not end the call
                self.log.exception("could not save the call")

    def _save(self) -> None:
        snapshot = self.record.to_json()
        encoded = json.dumps(snapshot, sort_keys=True)
        if encoded == self._saved_json:
            return
        began = time.monotonic()
        run_blocking(self.services.store.save_call, snapshot)
        self.save_latencies_ms.append((time.monotonic() - began) * 1000)
        self._saved_json = encoded
