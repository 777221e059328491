"""An SVG picture of a stereo call recording: two waveform lanes, a time axis, the turns marked.

Pure: samples and turns in, SVG text out (no files, no clock). The page that shows a call
(``handlers/pages.py``) inlines the result in its HTML; it is also a valid standalone SVG file.

Layout (SVG user units = CSS pixels at ``width_px``):

* a gutter of ``GUTTER_PX`` on the left holds the lane labels; the plot spans
  ``[GUTTER_PX, width_px)``, and media time ``t_ms`` is at
  ``x = GUTTER_PX + t_ms / duration_ms * (width_px - GUTTER_PX)``;
* lane 0 (top, the left channel: the caller) from ``y = 0``, lane 1 (bottom, the right
  channel: the bot or the callee) from ``y = lane_height_px``, each ``lane_height_px`` tall;
* the time axis (ticks and labels in seconds) below, ``AXIS_HEIGHT_PX`` tall.

Each lane is a min/max envelope: the samples are grouped into runs of equal length (at most
one run per pixel column), and a filled path goes through each run's maximum left to right
and back through its minimum. Turns are translucent rectangles over their speaker's lane,
with a ``<title>`` (a tooltip in browsers) holding the text.

The envelope is all a picture needs of the audio: :class:`Envelope` holds it (a few kB for a
call of any length), :func:`envelope_of_wav` computes it from a WAV file read in blocks (bounded
memory: a one-hour call is never decoded whole), and :func:`envelope_svg` draws it. The call
page stores it once per call (``store.CallStore.save_waveform``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, BinaryIO, Sequence
from xml.sax.saxutils import escape

import numpy as np

from audio.errors import AudioFormatError

GUTTER_PX = 64
AXIS_HEIGHT_PX = 24
LANE_PADDING_PX = 4
# Candidate tick spacings, s; the smallest that keeps ticks at least MIN_TICK_SPACING_PX apart wins.
TICK_STEPS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
MIN_TICK_SPACING_PX = 70

LANE_SPEAKERS = ({"caller"}, {"bot", "callee"})
TURN_COLOURS = {"caller": "#2563eb", "bot": "#16a34a", "callee": "#ea580c"}
WAVE_COLOURS = ("#1e3a8a", "#14532d")
TURN_OPACITY = 0.22
DEFAULT_WIDTH_PX = 1000
ENVELOPE_COLUMNS = DEFAULT_WIDTH_PX - GUTTER_PX
"""Columns of a stored envelope: one per pixel of the default picture's plot."""
BLOCK_FRAMES = 1 << 16
"""Frames decoded at a time by :func:`envelope_of_wav` (256 kB of int16 stereo)."""
ENVELOPE_VERSION = 1


@dataclass(frozen=True)
class Envelope:
    """The min/max envelope of a two-channel recording, one column per ``run_frames`` frames.

    Attributes:
        sample_rate: frames per second, Hz.
        num_frames: frames in the recording.
        run_frames: frames per column (the last column may hold fewer); at least 1.
        highs, lows: per lane (0 = left = caller, 1 = right = bot/callee), an ``int16`` array of
            each column's maximum / minimum sample; ``ceil(num_frames / run_frames)`` columns.
    """

    sample_rate: int
    num_frames: int
    run_frames: int
    highs: tuple[np.ndarray, np.ndarray]
    lows: tuple[np.ndarray, np.ndarray]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict (lists of ints), for the call store."""
        return {
            "version": ENVELOPE_VERSION, "sample_rate": self.sample_rate, "num_frames": self.num_frames,
            "run_frames": self.run_frames, "highs": [lane.tolist() for lane in self.highs],
            "lows": [lane.tolist() for lane in self.lows],
        }

    @classmethod
    def from_json(cls, data: Any) -> Envelope:
        """The inverse of :meth:`to_json`.

        Raises:
            AudioFormatError: not a dict of this version and shape.
        """
        try:
            if data["version"] != ENVELOPE_VERSION:
                raise AudioFormatError(f"envelope version {data['version']!r} is not {ENVELOPE_VERSION}")
            num_frames, run_frames = int(data["num_frames"]), int(data["run_frames"])
            highs = tuple(np.asarray(lane, dtype=np.int16) for lane in data["highs"])
            lows = tuple(np.asarray(lane, dtype=np.int16) for lane in data["lows"])
            envelope = cls(int(data["sample_rate"]), num_frames, run_frames, highs, lows)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise AudioFormatError(f"not a stored envelope: {error}") from None
        columns = math.ceil(num_frames / run_frames) if run_frames > 0 else -1
        if (envelope.sample_rate <= 0 or run_frames < 1 or num_frames < 0 or len(highs) != 2 or len(lows) != 2
                or any(lane.shape != (columns,) for lane in (*highs, *lows))):
            raise AudioFormatError("not a stored envelope: inconsistent sizes")
        return envelope


class EnvelopeBuilder:
    """Computes an :class:`Envelope` from blocks of samples fed in order (bounded memory).

    Args:
        num_frames: the recording's length, frames (known from its header).
        sample_rate: Hz.
        columns: how many columns at most (``run_frames = ceil(num_frames / columns)``).
    """

    def __init__(self, num_frames: int, sample_rate: int, columns: int = ENVELOPE_COLUMNS) -> None:
        self.num_frames = num_frames
        self.sample_rate = sample_rate
        self.run_frames = max(1, math.ceil(num_frames / max(1, columns)))
        self._carry = np.zeros((0, 2), np.int16)  # frames of an unfinished column
        self._highs: list[np.ndarray] = []
        self._lows: list[np.ndarray] = []
        self._seen = 0

    def add(self, block: np.ndarray) -> None:
        """Feed the next ``int16`` frames, shape ``(n, 2)``; frames past ``num_frames`` are ignored."""
        block = block[: max(0, self.num_frames - self._seen)]
        self._seen += block.shape[0]
        frames = np.concatenate([self._carry, block]) if self._carry.shape[0] else block
        num_full = frames.shape[0] // self.run_frames
        if num_full:
            full = frames[: num_full * self.run_frames].reshape(num_full, self.run_frames, 2)
            self._highs.append(full.max(axis=1))
            self._lows.append(full.min(axis=1))
        self._carry = np.array(frames[num_full * self.run_frames :])

    def result(self) -> Envelope:
        """The envelope of what was fed (a shorter last column from the remaining frames)."""
        highs, lows = list(self._highs), list(self._lows)
        if self._carry.shape[0]:
            highs.append(self._carry.max(axis=0, keepdims=True))
            lows.append(self._carry.min(axis=0, keepdims=True))
        high = np.concatenate(highs) if highs else np.zeros((0, 2), np.int16)
        low = np.concatenate(lows) if lows else np.zeros((0, 2), np.int16)
        return Envelope(self.sample_rate, self._seen, self.run_frames,
                        (high[:, 0].copy(), high[:, 1].copy()), (low[:, 0].copy(), low[:, 1].copy()))


def envelope_of(stereo_pcm: np.ndarray, sample_rate: int, columns: int = ENVELOPE_COLUMNS) -> Envelope:
    """The envelope of ``int16`` samples of shape ``(n, 2)`` held in memory, at most ``columns`` columns."""
    builder = EnvelopeBuilder(stereo_pcm.shape[0], sample_rate, columns)
    builder.add(stereo_pcm)
    return builder.result()


def envelope_of_wav(source: str | BinaryIO, columns: int = ENVELOPE_COLUMNS, block_frames: int = BLOCK_FRAMES) -> Envelope:
    """Read a WAV file (a path or a seekable binary file object) ``block_frames`` at a time and
    return its envelope. A mono file is drawn on the left (caller's) lane; channels past two are ignored.

    Blocking (file or database reads, decoding): run it in a thread.

    Raises:
        AudioFormatError: the file does not decode as audio (a truncated or foreign file).
    """
    import soundfile

    try:
        with soundfile.SoundFile(source) as audio:
            builder = EnvelopeBuilder(audio.frames, audio.samplerate, columns)
            for block in audio.blocks(blocksize=block_frames, dtype="int16", always_2d=True):
                if block.shape[1] == 1:
                    block = np.column_stack([block[:, 0], np.zeros_like(block[:, 0])])
                builder.add(np.ascontiguousarray(block[:, :2]))
            return builder.result()
    except (RuntimeError, TypeError, ValueError) as error:  # soundfile.LibsndfileError is a RuntimeError
        raise AudioFormatError(f"the recording does not decode: {error}") from None


def waveform_svg(
    stereo_pcm: np.ndarray,
    sample_rate: int,
    turns: Sequence[dict],
    *,
    width_px: int = DEFAULT_WIDTH_PX,
    lane_height_px: int = 80,
    labels: tuple[str, str] = ("caller", "bot"),
) -> str:
    """Draw a two-channel recording with its turns as an SVG document (no XML declaration).

    Args:
        stereo_pcm: ``int16`` array of shape ``(num_samples, 2)``: column 0 (left) is the
            caller, column 1 (right) the bot or callee; sample 0 is media time 0.
        sample_rate: samples per second of each channel, in Hz (8000 for call recordings).
        turns: turn dicts (the API shape, ``StoredTurn.to_json()``): ``speaker`` (``"caller"`` → top
            lane; ``"bot"``/``"callee"`` → bottom lane; other speakers are not drawn),
            ``start_ms``, ``end_ms`` (media clock ms; ``None`` draws a thin mark at the
            start), ``text``, optional ``dtmf``.
        width_px: total width of the picture, gutter included, px (at least
            ``GUTTER_PX + 100``).
        lane_height_px: height of each lane, px (at least 20).
        labels: names written in the gutter of the top and bottom lanes.

    Returns:
        SVG markup, ``width_px`` × ``2 * lane_height_px + AXIS_HEIGHT_PX``. The time axis
        spans ``max(audio duration, latest turn end)``; with neither it spans 1 s. All
        text is XML-escaped, so the markup can be inlined in HTML as is.

    Raises:
        AudioFormatError: ``stereo_pcm`` is not ``int16`` of shape ``(n, 2)``, or
            ``sample_rate``, ``width_px`` or ``lane_height_px`` is out of range.
    """
    samples = np.asarray(stereo_pcm)
    if samples.ndim != 2 or samples.shape[1] != 2 or samples.dtype != np.int16:
        raise AudioFormatError(f"expected int16 samples of shape (n, 2), got {samples.dtype} {samples.shape}")
    _check_dimensions(sample_rate, width_px, lane_height_px)
    num_samples = samples.shape[0]
    px_per_ms = (width_px - GUTTER_PX) / _duration_ms(num_samples * 1000 / sample_rate, turns)
    columns = max(1, math.floor(num_samples * 1000 / sample_rate * px_per_ms))  # at most one per pixel
    return envelope_svg(envelope_of(samples, sample_rate, columns), turns, width_px=width_px,
                        lane_height_px=lane_height_px, labels=labels)


def envelope_svg(
    envelope: Envelope,
    turns: Sequence[dict],
    *,
    width_px: int = DEFAULT_WIDTH_PX,
    lane_height_px: int = 80,
    labels: tuple[str, str] = ("caller", "bot"),
) -> str:
    """Draw a recording's stored :class:`Envelope` with its turns: the same picture as
    :func:`waveform_svg` (arguments and result as there), without the samples.

    Raises:
        AudioFormatError: ``width_px`` or ``lane_height_px`` is out of range.
    """
    _check_dimensions(envelope.sample_rate, width_px, lane_height_px)
    plot_px = width_px - GUTTER_PX
    height_px = 2 * lane_height_px + AXIS_HEIGHT_PX
    duration_ms = _duration_ms(envelope.num_frames * 1000 / envelope.sample_rate, turns)
    px_per_ms = plot_px / duration_ms

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="waveform" width="{width_px}" height="{height_px}" '
        f'viewBox="0 0 {width_px} {height_px}" role="img" aria-label="Waveform of the call with its turns" '
        'font-family="system-ui, sans-serif" font-size="12">',
        f"<title>Waveform: {escape(labels[0])} (top), {escape(labels[1])} (bottom)</title>",
    ]
    for lane in (0, 1):
        top = lane * lane_height_px
        parts.append(
            f'<rect class="lane" x="{GUTTER_PX}" y="{top}" width="{plot_px}" height="{lane_height_px}" '
            f'fill="{"#f8fafc" if lane == 0 else "#f1f5f9"}"/>'
        )
        parts.append(
            f'<text class="lane-label" x="{GUTTER_PX - 6}" y="{top + lane_height_px / 2:.1f}" '
            f'text-anchor="end" dominant-baseline="middle" fill="#334155">{escape(labels[lane])}</text>'
        )
        path = _envelope_path(envelope, lane, px_per_ms, top, lane_height_px)
        if path:
            parts.append(
                f'<path class="envelope" d="{path}" fill="{WAVE_COLOURS[lane]}" '
                f'stroke="{WAVE_COLOURS[lane]}" stroke-width="0.6"/>'
            )
        else:  # no audio: the centre line only
            centre = top + lane_height_px / 2
            parts.append(
                f'<line class="centre" x1="{GUTTER_PX}" y1="{centre}" x2="{width_px}" y2="{centre}" '
                f'stroke="{WAVE_COLOURS[lane]}" stroke-width="0.6"/>'
            )
    parts.extend(_turn_rects(turns, px_per_ms, lane_height_px, width_px))
    parts.extend(_time_axis(duration_ms, px_per_ms, 2 * lane_height_px, width_px))
    parts.append("</svg>")
    return "\n".join(parts)


def _check_dimensions(sample_rate: int, width_px: int, lane_height_px: int) -> None:
    if sample_rate <= 0 or width_px < GUTTER_PX + 100 or lane_height_px < 20:
        raise AudioFormatError(
            f"need sample_rate > 0, width_px >= {GUTTER_PX + 100}, lane_height_px >= 20; "
            f"got {sample_rate}, {width_px}, {lane_height_px}"
        )


def _duration_ms(audio_ms: float, turns: Sequence[dict]) -> float:
    """What the time axis spans: the audio or the latest turn end, whichever is later (1 s if neither)."""
    turn_ends_ms = [t["end_ms"] if t.get("end_ms") is not None else t.get("start_ms") or 0 for t in turns]
    return max([audio_ms, *turn_ends_ms]) or 1000.0


def _envelope_path(envelope: Envelope, lane: int, px_per_ms: float, top: int, lane_height_px: int) -> str:
    """Return the SVG path data of one lane's min/max envelope, or "" for no samples."""
    highs, lows = envelope.highs[lane], envelope.lows[lane]
    num_columns = highs.shape[0]
    if num_columns == 0:
        return ""
    run, num_samples = envelope.run_frames, envelope.num_frames
    half_px = lane_height_px / 2 - LANE_PADDING_PX
    centre = top + lane_height_px / 2
    y_max = centre - highs.astype(np.float64) * (half_px / 32768)
    y_min = centre - lows.astype(np.float64) * (half_px / 32768)
    ms_per_sample = 1000 / envelope.sample_rate
    x_left = GUTTER_PX + np.arange(num_columns) * run * ms_per_sample * px_per_ms
    x_right = GUTTER_PX + np.minimum((np.arange(num_columns) + 1) * run, num_samples) * ms_per_sample * px_per_ms
    # Each column is a flat step from its left to its right edge, over the top then back under.
    xs_top = np.column_stack([x_left, x_right]).ravel()
    ys_top = np.repeat(y_max, 2)
    xs_bottom = xs_top[::-1]
    ys_bottom = np.repeat(y_min, 2)[::-1]
    xs = np.concatenate([xs_top, xs_bottom])
    ys = np.concatenate([ys_top, ys_bottom])
    # At most 4 points per pixel column: formatting them is cheap next to the reductions above.
    return "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist())) + " Z"


def _turn_rects(turns: Sequence[dict], px_per_ms: float, lane_height_px: int, width_px: int) -> list[str]:
    rects = []
    for turn in turns:
        speaker = turn.get("speaker")
        lane = next((i for i, names in enumerate(LANE_SPEAKERS) if speaker in names), None)
        if lane is None:
            continue
        start_ms = turn.get("start_ms") or 0
        end_ms = turn.get("end_ms") if turn.get("end_ms") is not None else start_ms
        x = GUTTER_PX + start_ms * px_per_ms
        width = max(2.0, (end_ms - start_ms) * px_per_ms)  # a key press or a zero-length turn stays visible
        width = min(width, max(0.0, width_px - x))
        text = turn.get("text") or ""
        if not text and turn.get("dtmf"):
            text = f"[keys {turn['dtmf']}]"
        label = f"{speaker} {format_clock(start_ms)}–{format_clock(end_ms)}: {text}"
        rects.append(
            f'<rect class="turn turn-{speaker}" data-start-ms="{start_ms}" data-end-ms="{end_ms}" '
            f'x="{x:.2f}" y="{lane * lane_height_px}" width="{width:.2f}" height="{lane_height_px}" '
            f'fill="{TURN_COLOURS[speaker]}" fill-opacity="{TURN_OPACITY}"><title>{escape(label)}</title></rect>'
        )
    return rects


def _time_axis(duration_ms: float, px_per_ms: float, top: int, width_px: int) -> list[str]:
    step_s = next((s for s in TICK_STEPS_S if s * 1000 * px_per_ms >= MIN_TICK_SPACING_PX), TICK_STEPS_S[-1])
    num_ticks = math.floor(duration_ms / (step_s * 1000) + 1e-9) + 1
    parts = [
        '<g class="time-axis" stroke="#64748b" fill="#334155">',
        f'<line x1="{GUTTER_PX}" y1="{top}" x2="{width_px}" y2="{top}" stroke-width="1"/>',
    ]
    for i in range(num_ticks):
        t_s = round(i * step_s, 3)
        x = GUTTER_PX + t_s * 1000 * px_per_ms
        anchor = "start" if i == 0 else "end" if x > width_px - 20 else "middle"
        label = f"{t_s:g} s"
        parts.append(f'<line class="tick" x1="{x:.2f}" y1="{top}" x2="{x:.2f}" y2="{top + 5}" stroke-width="1"/>')
        parts.append(
            f'<text class="tick-label" data-seconds="{t_s:g}" x="{x:.2f}" y="{top + 18}" '
            f'text-anchor="{anchor}" stroke="none">{escape(label)}</text>'
        )
    parts.append("</g>")
    return parts


def format_clock(ms: float | None) -> str:
    """Format a media-clock time as ``m:ss.s`` (``"—"`` for ``None``).

    Args:
        ms: milliseconds since the stream started.

    Returns:
        E.g. ``"0:04.1"`` for 4120, ``"12:00.0"`` for 720000.
    """
    if ms is None:
        return "—"
    tenths = int(round(ms / 100))
    minutes, tenths = divmod(tenths, 600)
    return f"{minutes}:{tenths // 10:02d}.{tenths % 10}"

