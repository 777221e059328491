"""Tools for the language model: a clinic's appointments, as plain typed functions.

Run: ``RESPONDER=llm LLM_TOOLS=examples.clinic_tools python app.py``

Every public function defined here is offered to the model as a tool: its type hints give the
JSON schema of its arguments and its docstring the descriptions (the summary for the tool, the
``Args:`` lines for the parameters). A tool runs in a thread, so it may block on a database or
an HTTP API; what it returns is sent to the model as JSON, and an exception it raises is told to
the model as an error (which the model can then explain to the caller).
"""

from enum import Enum
from typing import Literal, Optional

_APPOINTMENTS = {"ann lee": "Tuesday at ten in the morning", "bob stone": "Friday at three in the afternoon"}


class Clinic(Enum):
    NORTH = "north"
    SOUTH = "south"


def next_appointment(name: str) -> str:
    """Look up the next appointment of a patient.

    Args:
        name: the patient's full name, as they said it.
    """
    when = _APPOINTMENTS.get(name.strip().lower())
    if when is None:
        raise LookupError(f"no appointment found for {name}")
    return when


def free_slots(day: Literal["monday", "tuesday", "wednesday", "thursday", "friday"], clinic: Clinic = Clinic.NORTH,
               after_hour: Optional[int] = None) -> list[str]:
    """The times still free on a day, to offer the caller.

    Args:
        day: the weekday.
        clinic: which of our two clinics.
        after_hour: only times from this hour on (24-hour clock), if the caller said so.
    """
    hours = [9, 10, 14, 16] if clinic is Clinic.NORTH else [11, 15]
    return [f"{day} at {hour}:00" for hour in hours if after_hour is None or hour >= after_hour]
