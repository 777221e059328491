"""callsim's platform side for outbound calls and transfers: the pure parts (no network)."""

import argparse

import numpy as np
import pytest

from tools.call import build_arg_parser as call_parser, request_body
from tools.twilio_sim.platform import OutboundCall, beep_pcm
from tools.twilio_sim.twiml import TwimlError, dial_targets


def test_the_transfer_twiml_names_its_dial_targets():
    assert dial_targets("<Response><Dial>+15550123</Dial></Response>") == ["+15550123"]
    assert dial_targets('<?xml version="1.0"?><Response><Dial><Sip>sip:desk@pbx.example.com</Sip></Dial></Response>') == [
        "Sip:sip:desk@pbx.example.com"]
    assert dial_targets("<Response><Hangup/></Response>") == []
    for bad in ("<Dial>+1</Dial>", "not xml"):
        with pytest.raises(TwimlError):
            dial_targets(bad)


def test_an_outbound_call_answers_its_webhook_like_twilio():
    call = OutboundCall("CA" + "1" * 32, {"To": "+15550199", "From": "+15550100", "Url": "https://h/outbound-call?amd=1",
                                          "AsyncAmd": "true", "AsyncAmdStatusCallback": "https://h/amd-status"})
    form = call.webhook_form("AC" + "2" * 32)
    assert (form["Direction"], form["From"], form["To"], form["CallStatus"]) == ("outbound-api", "+15550100", "+15550199", "in-progress")
    assert call.machine_detection and call.webhook_url.endswith("amd=1")
    assert not OutboundCall("CA1", {"Url": "u"}).machine_detection


def test_the_beep_is_a_kilohertz_tone_of_half_a_second():
    samples = beep_pcm(8000)
    assert len(samples) == 4000 and np.abs(samples).max() <= 0.5 and samples[0] == 0
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * 8000 / len(samples) == pytest.approx(1000, abs=2)


def test_tools_call_builds_the_api_body():
    args = call_parser().parse_args(["+15550199", "--greeting", "Hi", "--param", "name=Ann", "--param", "when=Tue 3 pm",
                                     "--no-machine-detection", "--responder", "a:b"])
    assert request_body(args) == {"to": "+15550199", "greeting": "Hi", "responder": "a:b", "machine_detection": False,
                                  "parameters": {"name": "Ann", "when": "Tue 3 pm"}}
    assert request_body(call_parser().parse_args(["+15550199"])) == {"to": "+15550199"}
    with pytest.raises(ValueError):
        request_body(call_parser().parse_args(["+15550199", "--param", "oops"]))


def test_callsim_refuses_answer_options_that_do_not_fit():
    from tools.callsim import build_arg_parser
    from tools.twilio_sim.call import run

    parser = build_arg_parser()
    for argv in (["--voicemail", "v.wav"], ["--answer", "x.wav"], ["--answer", "--fork", "--auth-token", "t", "x.wav"]):
        with pytest.raises(SystemExit) as exit_info:
            run(parser.parse_args(argv), parser)
        assert exit_info.value.code == 2
    assert isinstance(parser.parse_args(["--answer", "--api-port", "8011"]), argparse.Namespace)
