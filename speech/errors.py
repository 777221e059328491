"""Errors raised by the speech engines (recognition and synthesis).

The engines raise; the call worker chooses the policy (log and skip the turn,
fall back to another engine, or hang up).
"""


class RecognitionError(Exception):
    """A speech recognition engine failed (model, process, network or API error).

    The message names the engine; the original exception is chained as
    ``__cause__``. "Nothing was recognised" is not an error: ``transcribe``
    returns ``""`` for that.
    """


class SynthesisError(Exception):
    """A speech synthesis engine failed (model, network or decoding error).

    The message names the engine; the original exception is chained as
    ``__cause__``.
    """


class EngineConfigError(ValueError):
    """An engine name, option or model path is invalid (caught at construction)."""
