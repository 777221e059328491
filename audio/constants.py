"""Sample rates and frame lengths of the call protocol and the engines, each defined once.

Pure constants (no imports), so ``core`` and the benchmarks can take them without the codecs.
The formats SignalWire's L16 adds (16 000 and 24 000 Hz) are in ``audio.stream_format``.
"""

MULAW_SAMPLE_RATE = 8000
"""Hz: Twilio Media Streams' ``audio/x-mulaw``, mono, both ways (protocol.md §2.3); SignalWire's default."""

FRAME_MS = 20
"""ms: audio per media message Twilio sends (160 μ-law bytes), and per frame the VAD and the
endpointer analyse (``audio.framing.FrameAssembler``)."""

WHISPER_SAMPLE_RATE = 16000
"""Hz: what whisper (and SpeechRecognition's engines) take; 24 kHz L16 streams are analysed at it."""

VAD_SAMPLE_RATES = (8000, 16000, 32000, 48000)
"""Hz: the rates the WebRTC VAD takes, and so the endpointer and the frame assembler."""

VAD_FRAME_MS = (10, 20, 30)
"""ms: the frame lengths the WebRTC VAD takes."""
