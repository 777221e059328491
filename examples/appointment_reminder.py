"""An appointment reminder: an outbound call that confirms, transfers, or leaves a voicemail.

Place it (the server runs with ``OUTBOUND_RESPONDERS=examples.appointment_reminder:respond``)::

    python tools/call.py +15551234567 --responder examples.appointment_reminder:respond \\
        --param name=Ann --param when="Tuesday at 3 pm" \\
        --greeting "Hi Ann, this is Harbour Clinic with a reminder of your appointment on Tuesday at 3 pm. \\
Press 1 or say yes to confirm, or press 0 to talk to the front desk."

A person hears the greeting once Twilio's answering-machine detection says a human answered;
pressing 1 (or saying yes) confirms, 0 (or asking for a person) transfers the call to the front
desk (``FRONT_DESK_NUMBER``, default ``+15550123``). An answering machine gets a message with
the appointment's time after its beep (``@answers_machines``), then the call ends.
"""

import os

from core.responder import CallContext, Goodbye, Transfer, answers_machines

FRONT_DESK = os.environ.get("FRONT_DESK_NUMBER", "+15550123")


@answers_machines
def respond(text: str, call: CallContext):
    """One turn of the reminder (``text`` is ``""`` for key presses and for an answering machine)."""
    when = call.custom_parameters.get("when", "your appointment time")
    if call.answered_by and call.answered_by.startswith("machine"):  # after the beep: leave the message
        name = call.custom_parameters.get("name", "")
        return Goodbye(f"Hello{' ' + name if name else ''}, this is Harbour Clinic reminding you of your appointment "
                       f"on {when}. Please call us back if you need to change it. Goodbye.")
    words = (call.dtmf or "") + " " + text.lower()
    if "0" in words or "person" in words or "desk" in words:
        return Transfer(FRONT_DESK, "Connecting you to the front desk now.")
    if "1" in words or "yes" in words or "confirm" in words:
        return Goodbye(f"Thank you, your appointment on {when} is confirmed. Goodbye.")
    if "2" in words or "cancel" in words or "change" in words:
        return Transfer(FRONT_DESK, "Let me connect you to the front desk to change it.")
    return "Press 1 or say yes to confirm, or press 0 to talk to the front desk."
