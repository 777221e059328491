"""A speakerphone's echo: the bot's voice, as played to the caller, leaking back into the caller's microphone.

Pure: no I/O, no clock reads. numpy and the repository's ``audio.codec`` (through ``MediaFormat``)
are imported once an ``EchoPath`` is made, so importing this module imports neither.
"""

from __future__ import annotations

import math

from tools.twilio_sim.media_format import MULAW_8K, MediaFormat

ECHO_DELAY_MS_DEFAULT = 160  # a loudspeaker-to-microphone path plus a handset's audio buffering
ECHO_DELAY_MS_MAX = 2000  # longer than any real acoustic path; more is a typo


def echo_gain(echo_db: float) -> float:
    """Linear amplitude factor of an echo ``echo_db`` dB relative to the played audio (-20 dB → 0.1)."""
    return 10 ** (echo_db / 20)


class EchoPath:
    """The acoustic path from the caller's loudspeaker back into their microphone: a delay and a gain.

    Driven once per 20 ms tick, in this order: ``played`` with what the playback buffer
    played this tick, then ``mix`` with the caller's outgoing frame. The echo of a sample
    played at stream sample ``n`` is added at stream sample ``n + delay_samples`` of the
    caller's audio, so a ``delay_ms`` of 0 lands in the same tick and a delay that is not a
    multiple of 20 ms spans two ticks. Mixing is in linear PCM: decode the wire bytes, add
    the played samples times ``10 ** (echo_db / 20)``, round, clip to int16, encode again.

    Args:
        echo_db: level of the echo relative to the played audio, dB, finite and <= 0 (-20: a tenth
            of the amplitude).
        delay_ms: from playing a sample to hearing it in the microphone, ms, 0..``ECHO_DELAY_MS_MAX``
            (any multiple of 1 ms is whole samples at 8/16/24 kHz; a fraction is rounded to whole samples).
        media_format: the stream's wire format (μ-law 8 kHz on Twilio, L16 at 16/24 kHz on SignalWire);
            both ``played`` and ``mix`` take and ``mix`` returns payload bytes in it.

    Raises:
        ValueError: ``echo_db`` not finite or above 0, or ``delay_ms`` out of range.
    """

    def __init__(self, echo_db: float, delay_ms: float = ECHO_DELAY_MS_DEFAULT, media_format: MediaFormat = MULAW_8K):
        import numpy as np

        if not (math.isfinite(echo_db) and echo_db <= 0):
            raise ValueError(f"echo_db must be a finite number <= 0, got {echo_db!r}")
        if not 0 <= delay_ms <= ECHO_DELAY_MS_MAX:  # NaN fails too
            raise ValueError(f"delay_ms must be within 0..{ECHO_DELAY_MS_MAX}, got {delay_ms!r}")
        self.echo_db = echo_db
        self.delay_ms = delay_ms
        self.media_format = media_format
        self.gain = echo_gain(echo_db)
        self.delay_samples = round(delay_ms * media_format.sample_rate / 1000)
        self._frame_samples = media_format.frame_bytes // media_format.sample_width
        # Played samples (int16) not yet mixed: the delay line. It starts with the delay's worth of
        # silence, so the n-th sample played comes out as the (n + delay)-th sample mixed.
        self._line = np.zeros(self.delay_samples, dtype=np.int16)

    def played(self, audio: bytes) -> None:
        """Feed what the caller's loudspeaker played this tick.

        Args:
            audio: payload bytes in ``media_format``, at most one 20 ms frame; shorter (or ``b""``)
                when the playback buffer ran dry: the rest of the tick was silence, as in ``heard``.
        """
        import numpy as np

        samples = self._decode(audio)
        silence = np.zeros(max(0, self._frame_samples - len(samples)), dtype=np.int16)
        self._line = np.concatenate((self._line, samples, silence))

    def mix(self, payload: bytes) -> bytes:
        """Return the caller's outgoing payload with the echo due in it added.

        Args:
            payload: the caller's frame, payload bytes in ``media_format`` (whole samples).

        Returns:
            The same number of bytes in ``media_format``; ``payload`` itself when no echo is due
            (nothing decoded and encoded again: μ-law's negative zero stays as it was).
        """
        import numpy as np

        count = len(payload) // self.media_format.sample_width
        echo = np.zeros(count, dtype=np.float64)
        due = self._line[:count]  # shorter only if ``played`` was skipped: silence then
        echo[:len(due)] = due
        self._line = self._line[len(due):]
        if not echo.any():
            return payload
        mixed = self._decode(payload).astype(np.float64) + self.gain * echo
        # MediaFormat.encode takes floats in [-1, 1]: it scales by 32768, rounds and clips to int16.
        return self.media_format.encode(mixed / 32768)

    def _decode(self, payload: bytes):
        """Payload bytes in ``media_format`` → int16 samples (a numpy array)."""
        import numpy as np

        return np.frombuffer(self.media_format.to_pcm16(payload), dtype="<i2")
