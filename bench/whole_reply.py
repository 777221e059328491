"""Baseline responder for ``bench/voice_to_voice.py --llm RATE --whole-reply``: the LLM responder
(``responders.llm``, configured by the same ``LLM_*`` settings), but the reply is returned only once
the model has finished it, as an integration without streaming does."""

import os

from core.settings import load_settings
from responders.llm import make_llm_responder

_SETTINGS = load_settings(os.environ)


def respond(text, call):
    # A client per call: this runs in a pool thread, and a pooled connection (a gevent socket) must
    # not move between threads (runtime/reply_stream.py).
    return "".join(make_llm_responder(_SETTINGS)(text, call))
