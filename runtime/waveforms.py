"""The waveform of a call's stereo recording, computed once and kept in the call store (blocking).

Decoding a recording to draw it costs memory in proportion to its length (a one-hour call:
over 200 MB); its envelope (``audio.waveform.Envelope``) is a few kB. So the envelope is
computed when the call's recordings are filed (``runtime.call_keeper.file_recordings``),
reading the WAV in blocks, and stored; the call page draws the stored envelope, and computes
and stores it at its first view for calls filed before this existed. Run these in a thread
(``run_blocking``): they read files or the database.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

from audio.errors import AudioFormatError
from audio.waveform import Envelope, envelope_of_wav

log = logging.getLogger(__name__)


def save_waveform_of(store: Any, call_sid: str, files: Iterable[Any]) -> Envelope | None:
    """Compute and store the envelope of the stereo file among just-finished recording ``files``.

    Args:
        store: the ``CallStore``.
        files: ``audio.recording.RecordingFile``s (``kind``, ``path``); without a stereo one, nothing happens.

    Returns:
        The envelope, or ``None`` (no stereo file, or it failed: logged, never raised, so that
        filing the recordings goes on).
    """
    stereo = next((item for item in files if item.kind == "stereo"), None)
    if stereo is None:
        return None
    try:
        envelope = envelope_of_wav(str(Path(stereo.path)))
        store.save_waveform(call_sid, envelope.to_json())
        return envelope
    except Exception:  # the picture is a convenience: the page computes it later if needed
        log.exception("could not compute the waveform of call %s", call_sid)
        return None


def waveform_of_call(store: Any, call_sid: str) -> Envelope | None:
    """The stored envelope of a call's stereo recording; computed from the recording (streamed
    from its file or the database, bounded memory) and stored on first use.

    Returns:
        The envelope, or ``None`` when there is no stereo recording or it does not decode (logged).
    """
    stored = store.waveform(call_sid)
    if stored is not None:
        try:
            return Envelope.from_json(stored)
        except AudioFormatError as error:
            log.warning("stored waveform of %s is unusable (%s): computing it again", call_sid, error)
    reader = store.recording_reader(call_sid, "stereo")
    if reader is None:
        return None
    try:
        with reader:
            envelope = envelope_of_wav(reader)
    except AudioFormatError as error:
        log.warning("stereo recording of %s cannot be drawn: %s", call_sid, error)
        return None
    store.save_waveform(call_sid, envelope.to_json())
    return envelope
