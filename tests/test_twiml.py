"""TwiML built with the twilio library."""

import xml.etree.ElementTree as ET

import pytest

from twiml.responses import connect_stream


def test_connect_stream_with_parameters_and_greeting():
    root = ET.fromstring(connect_stream("wss://abc.ngrok.app/media-stream", parameters={"From": "+15550001", "CallSid": "CA1"}, greeting="Hi & welcome"))
    assert [child.tag for child in root] == ["Say", "Connect"]
    assert root.find("Say").text == "Hi & welcome"
    stream = root.find("Connect/Stream")
    assert stream.get("url") == "wss://abc.ngrok.app/media-stream"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == {"From": "+15550001", "CallSid": "CA1"}


def test_nothing_follows_connect_so_closing_the_socket_ends_the_call():
    root = ET.fromstring(connect_stream("wss://h/media-stream"))
    assert [child.tag for child in root] == ["Connect"]


@pytest.mark.parametrize("url", ["https://h/media-stream", "ws://h/media-stream", "wss://h/media-stream?token=1"])
def test_invalid_stream_urls_are_refused(url):
    with pytest.raises(ValueError):
        connect_stream(url)


def test_parameter_length_is_kept_under_twilios_limit():
    root = ET.fromstring(connect_stream("wss://h/s", parameters={"Long": "x" * 2000}))
    param = root.find("Connect/Stream/Parameter")
    assert len(param.get("name")) + len(param.get("value")) < 500


def test_signalwire_codec_attribute():
    xml = connect_stream("wss://h/media-stream", codec="L16@24000h")
    assert ET.fromstring(xml).find("Connect/Stream").get("codec") == "L16@24000h"
    assert "codec" not in connect_stream("wss://h/media-stream")
    with pytest.raises(ValueError, match="codec"):
        connect_stream("wss://h/media-stream", codec="opus")
