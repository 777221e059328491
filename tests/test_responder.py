import sys
import types

import pytest

from core.responder import CallContext, ResponderConfigError, echo, load_responder

CALL = CallContext(call_sid="CA1", stream_sid="MZ1")


def test_echo_repeats_speech_and_digits():
    assert echo("hello there", CALL) == "You said: hello there"
    assert echo("", CallContext("CA1", "MZ1", dtmf="12#")) == "You pressed 1 2 #."


def test_load_two_argument_and_one_argument_responders(monkeypatch):
    module = types.ModuleType("my_bot")
    module.full = lambda text, call: f"{call.call_sid}:{text}"
    module.simple = lambda text: text.upper()
    monkeypatch.setitem(sys.modules, "my_bot", module)
    assert load_responder("my_bot:full")("hi", CALL) == "CA1:hi"
    simple = load_responder("my_bot:simple")
    assert simple("hi", CALL) == "HI"
    assert simple("", CallContext("CA1", "MZ1", dtmf="5")) is None  # one-argument responders get no key presses


@pytest.mark.parametrize("spec,message", [
    ("no_colon", "module:function"),
    ("missing_module_xyz:f", "cannot import"),
    ("core.responder:nope", "no attribute"),
    ("core.responder:__doc__", "not callable"),
])
def test_bad_responder_specs_are_clear_errors(spec, message):
    with pytest.raises(ResponderConfigError, match=message):
        load_responder(spec)
