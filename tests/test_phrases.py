"""The fixed-phrase cache (runtime/phrases.py): only configured phrases, per engine and stream format."""

import numpy as np

from audio.stream_format import MULAW_8K, StreamFormat
from runtime.phrases import PhraseCache
from speech.synthesis import SynthesizedAudio

L16_16K = StreamFormat("audio/x-L16", 16000)


def speak(text):
    return SynthesizedAudio(np.full(1600, 500, dtype=np.int16), 16000)


def test_only_the_sentences_of_the_fixed_phrases_are_kept():
    # Split as replies are (core.sentences): the call worker asks for one sentence at a time.
    cache = PhraseCache(["Hello there, how are you? Say something now please.", "", "Are you still there?"])
    assert cache.sentences == {"Hello there, how are you?", "Say something now please.", "Are you still there?"}
    cache.put("piper", MULAW_8K, "Are you still there?", b"\xff" * 800)
    cache.put("piper", MULAW_8K, "My card number is 4111.", b"\xff" * 800)  # a caller's words: never kept
    assert cache.get("piper", MULAW_8K, "Are you still there?") == b"\xff" * 800
    assert cache.get("piper", MULAW_8K, "My card number is 4111.") is None
    assert cache.get("gtts", MULAW_8K, "Are you still there?") is None
    assert cache.get("piper", L16_16K, "Are you still there?") is None
    assert len(cache) == 1 and cache.hits == 1


def test_prefill_synthesizes_each_sentence_in_the_wire_format_and_skips_failures(caplog):
    spoken = []

    def synthesize(text):
        spoken.append(text)
        if text == "This one is broken.":
            raise RuntimeError("engine down")
        return speak(text)

    cache = PhraseCache(["Hello there. This one is broken."])
    cache.prefill("piper", MULAW_8K, synthesize, ["Hello there. This one is broken."])
    cache.prefill("piper", MULAW_8K, synthesize, ["Hello there."])  # already there: not synthesized again
    assert spoken == ["Hello there.", "This one is broken."]
    audio = cache.get("piper", MULAW_8K, "Hello there.")
    assert len(audio) == 800  # 0.1 s at 16 kHz → 0.1 s of μ-law at 8 kHz, 1 byte per sample
    assert cache.get("piper", MULAW_8K, "This one is broken.") is None and "This one is broken." in caplog.text
