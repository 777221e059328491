"""A small front desk: a plain function responder using call metadata, key presses and hang-up.

Run: ``RESPONDER=examples.front_desk:respond python app.py``

It greets callers it has seen before in this call by number, answers key presses
(1: opening hours, 2: address, 0: a person), answers a few spoken questions, hands the caller to
a person (``FRONT_DESK_NUMBER``, default ``+15550123``; a cold transfer, which needs
``TWILIO_ACCOUNT_SID`` and ``TWILIO_AUTH_TOKEN``) when they press 0 or ask for one, and ends the
call when the caller says goodbye. A plain function: it runs in a worker thread, so it may block (look
something up in a database, call an HTTP API) without stalling other calls.
"""

import os

from core.responder import CallContext, Goodbye, Transfer

HOURS = "We are open from nine to five, Monday to Friday."
ADDRESS = "We are at 12 Harbour Street, next to the library."
MENU = "Press 1 for our opening hours, 2 for our address, 0 for a person, or just ask."
FRONT_DESK = os.environ.get("FRONT_DESK_NUMBER", "+15550123")
TRANSFERRING = "Connecting you to the front desk now."


def respond(text: str, call: CallContext):
    """Answer one caller turn.

    Args:
        text: what the caller said ("" for key presses).
        call: the call: ``call.dtmf`` holds the keys pressed for this turn, ``call.from_number``
            the caller, ``call.custom_parameters`` the stream's ``<Parameter>`` values and
            ``call.history`` the turns so far.

    Returns:
        The reply to speak; ``Goodbye(...)`` to say it and end the call; ``Transfer(...)`` to hand
        the caller to a person; ``None`` to stay silent.
    """
    if call.dtmf and "0" in call.dtmf:
        return Transfer(FRONT_DESK, TRANSFERRING)
    if call.dtmf:
        answers = {"1": HOURS, "2": ADDRESS}
        return " ".join(answers.get(key, f"There is nothing on key {key}.") for key in call.dtmf if key != "#")
    words = text.lower()
    if any(word in words for word in ("bye", "that's all", "thank you")):
        return Goodbye("Thanks for calling. Goodbye!")
    if any(word in words for word in ("person", "someone", "human", "front desk")):
        return Transfer(FRONT_DESK, TRANSFERRING)
    if "open" in words or "hours" in words:
        return HOURS
    if "where" in words or "address" in words:
        return ADDRESS
    asked_before = sum(1 for turn in call.history if turn["speaker"] == "caller") > 1
    if asked_before:
        return "Sorry, I did not get that. " + MENU
    return f"Hello{' caller from ' + call.from_number if call.from_number else ''}. {MENU}"
