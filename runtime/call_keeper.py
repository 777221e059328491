"""Keep one call in the store and on disk as it goes: its record and its recordings (gevent shell).

Audio is queued in memory by ``add_audio`` (cheap, on the hub); every ``FLUSH_INTERVAL_S`` a
greenlet writes it to the WAV files and, if the record changed, writes it to the call's folder
(``call.json``) and saves it in the store, all in gevent's threadpool, so neither file nor
database I/O blocks media handling. A crash loses at most that interval. A failed save (the
database is down) is retried at the next tick; it never stops the loop. ``finish`` closes the
recordings, writes the final record to the folder, then files the call in the store, or leaves
it pending for ``runtime.call_filer`` to retry (``runtime.call_folder`` describes the folder).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from functools import partial
from pathlib import Path

import gevent
from gevent.event import Event

from audio.recording import CallRecorder, RecordingFile
from audio.stream_format import MULAW_8K, StreamFormat
from core.records import CallRecord
from core.sids import is_call_sid
from runtime import call_folder
from runtime.blocking import run_blocking
from runtime.call_filer import CallFiler, run_quietly
from runtime.waveforms import save_waveform_of

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0


def recording_dir(recordings_root: Path, call_sid: str) -> Path:
    """The folder of one call's recordings: ``<RECORDINGS_DIR>/<call SID>``.

    Raises:
        ValueError: ``call_sid`` is not a call SID (``core.sids``), or the folder would not lie
            inside ``recordings_root`` once resolved (a symlink out of it).
    """
    if not is_call_sid(call_sid):
        raise ValueError(f"not a call SID: {call_sid[:40]!r}")
    directory = recordings_root / call_sid
    if not _is_call_folder(directory, recordings_root):
        raise ValueError(f"{directory} is not inside {recordings_root}")
    return directory


def _is_call_folder(directory: Path, recordings_root: Path | None = None) -> bool:
    """True if ``directory``, resolved, is named as a call SID and (when given) lies right inside
    ``recordings_root``, resolved: the only kind of folder the server may create or remove."""
    resolved = directory.resolve()
    if not is_call_sid(resolved.name):
        return False
    return recordings_root is None or resolved.parent == recordings_root.resolve()


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
        directory = files[0].path.parent
        if _is_call_folder(directory):  # never a folder that is not one call's (e.g. RECORDINGS_DIR/..)
            shutil.rmtree(directory, ignore_errors=True)
        else:
            log.warning("not removing %s: not a call's recording folder", directory)


class CallKeeper:
    """Record and persist one call.

    Args:
        services: the process-wide store, settings, ``instance_id`` and ``filer``.
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
        self.directory = recording_dir(Path(services.settings.recordings_dir), record.call_sid)
        self.recorder: CallRecorder | None = None
        self._has_folder = False
        self._saved_json = ""  # the record as last saved in the store / written to call.json
        self._written_json = ""
        self._store_failing = False
        self._loop: gevent.Greenlet | None = None
        self._stop = Event()
        self.save_latencies_ms: list[float] = []

    def start(self) -> None:
        """Create the call's folder and recording files, save the record, start the periodic flush.

        Neither a failed folder nor a failed first save stops the periodic loop: it saves the
        record once the store answers (a call is never left unsaved because its first second was).

        Raises:
            OSError, AudioFormatError: the folder or the recording files cannot be created (the
                loop still runs: the record is saved without recordings).
        """
        try:
            run_blocking(call_folder.open_folder, self.directory, self.services.instance_id)
            self._has_folder = True
            self.recorder = run_blocking(partial(CallRecorder, self.directory, stream_format=self.stream_format))
        finally:
            try:
                self._save()
            except Exception as exc:
                self._save_failed(exc)
            self._loop = gevent.spawn(self._run)

    def add_audio(self, track: str, start_ms: int, audio: bytes) -> None:
        """Queue wire audio (``stream_format``) of ``track`` ("inbound"/"outbound") at media time ``start_ms``."""
        if self.recorder is not None:
            self.recorder.add(track, start_ms, audio)

    def finish(self) -> None:
        """Stop the periodic flush, close the recordings, keep the final record on disk, file the call.

        The final record (with ``ended_at``) goes to the folder before the store is asked; if the
        store fails, the call stays pending and ``services.filer`` retries it (``filed`` is
        written only once the store has the record and every recording).
        """
        if self._loop is not None:
            self._stop.set()  # not kill(): a flush running in a thread must end before close() starts
            self._loop.join(timeout=10.0)
        files = None
        if self.recorder is not None:
            try:
                files = run_blocking(self.recorder.close)
            except Exception:
                self.log.exception("could not finish the recordings")
        final = self._snapshot()
        if self._has_folder:
            try:
                run_blocking(partial(call_folder.write_record, self.directory, final, durable=True))
            except Exception:
                self.log.exception("could not write the final record to %s", self.directory)
        filer_of(self.services).file(final, self.directory if self._has_folder else None, files)
        if self.save_latencies_ms:
            ordered = sorted(self.save_latencies_ms)
            self.log.info("store: %d saves, median %.1f ms, max %.1f ms", len(ordered), ordered[len(ordered) // 2], ordered[-1])

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            try:
                if self.recorder is not None:
                    run_blocking(self.recorder.flush)
            except Exception:  # a full disk must not end the call
                self.log.exception("could not write the recordings")
            try:
                self._save()
            except Exception as exc:  # nor a database outage
                self._save_failed(exc)

    def _snapshot(self) -> dict:
        return {**self.record.to_json(), "instance_id": self.services.instance_id}

    def _save(self) -> None:
        snapshot = self._snapshot()
        encoded = json.dumps(snapshot, sort_keys=True)
        if encoded == self._saved_json:
            return
        if self._has_folder and encoded != self._written_json:  # on disk first: a crash during a store outage keeps it
            try:
                run_quietly(call_folder.write_record, self.directory, snapshot)
                self._written_json = encoded
            except OSError as exc:  # the store may still take it
                self.log.warning("could not write %s: %s", call_folder.CALL_FILE, exc)
        began = time.monotonic()
        run_quietly(self.services.store.save_call, snapshot)
        self.save_latencies_ms.append((time.monotonic() - began) * 1000)
        self._saved_json = encoded
        if self._store_failing:
            self._store_failing = False
            self.log.info("the call is saved again")

    def _save_failed(self, exc: Exception) -> None:
        """Log the first failure of an outage with its traceback, then stay quiet until it ends."""
        if not self._store_failing:
            self._store_failing = True
            self.log.warning("could not save the call; retrying every %.0f s", FLUSH_INTERVAL_S, exc_info=exc)


def filer_of(services) -> CallFiler:
    """The process's ``CallFiler`` (made on first use, for ``Services`` built without one)."""
    if getattr(services, "filer", None) is None:
        services.filer = CallFiler(
            services.store,
            services.settings.recordings_store == "database",
            services.settings.store_retry_max_s,
        )
    return services.filer
