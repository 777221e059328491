"""Fixtures shared by several test modules."""

import socket

import pytest

from speech.recognition import WhisperRecognizer


def online(host: str) -> bool:
    """True if ``host`` accepts a TCP connection on 443 within 1 s (the cloud engines' tests skip then)."""
    try:
        socket.create_connection((host, 443), timeout=1.0).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def whisper():
    """The default recognizer, loaded and warmed once for the whole test session."""
    recognizer = WhisperRecognizer()
    recognizer.warm_up()
    yield recognizer
    recognizer.close()
