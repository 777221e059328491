"""Errors raised by the pure audio modules.

Pure code raises; the caller (the call worker) chooses the policy: log and drop
the audio, or end the call.
"""


class AudioFormatError(ValueError):
    """Audio data whose size, shape, dtype or parameters do not fit the stated format.

    Examples: PCM16 bytes of odd length, a VAD frame that is not exactly one
    frame long, a stereo array where mono is required.
    """
