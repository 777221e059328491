"""A streaming responder: a generator that yields its reply in pieces as it produces them.

Run: ``RESPONDER=examples.streaming_tutor:respond python app.py``

The server speaks each sentence as soon as it is complete, so the caller hears the start of a
long answer while the rest is still being worked out (here, slowly, one multiplication per
sentence; in practice tokens from a model, rows from a database). If the caller talks over
the reply, the generator is closed: code after its current ``yield`` does not run.
"""

import re
import time

from core.responder import CallContext, Goodbye

NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def respond(text: str, call: CallContext):
    """Recite the times table of the number the caller says (or presses), piece by piece.

    Yields:
        Pieces of the reply, of any length: whole sentences, words or tokens. A ``Goodbye``
        piece makes the reply end the call once it has played.
    """
    if "bye" in text.lower():
        yield Goodbye("Goodbye, and keep practising!")
        return
    number = _number(call.dtmf or text)
    if number is None:
        yield "Say or press a number from one to ten, and I will recite its times table."
        return
    yield f"Here is the table of {number}. "
    for factor in range(1, 11):
        time.sleep(0.05)  # stands for slow work: the sentences already yielded are being spoken meanwhile
        yield f"{factor} times {number} is {factor * number}. "


def _number(text: str) -> int | None:
    for word in re.findall(r"[a-z]+|\d+", text.lower()):
        value = int(word) if word.isdigit() else NUMBER_WORDS.get(word)
        if value is not None and 1 <= value <= 10:
            return value
    return None
