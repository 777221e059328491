"""A tools module (LLM_TOOLS=tests.llm_tools) for the end-to-end test: it notes each call in a file.

The server runs in another process, so the test counts the calls in the file named by
``CALLSTREAM_TEST_TOOL_LOG`` (one JSON line per call).
"""

import json
import os

ANSWER = "Tuesday at ten"


def next_appointment(name: str) -> str:
    """Look up the caller's next appointment.

    Args:
        name: the caller's name.
    """
    with open(os.environ["CALLSTREAM_TEST_TOOL_LOG"], "a") as log:
        log.write(json.dumps({"name": name}) + "\n")
    return ANSWER
