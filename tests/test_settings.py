"""Settings parse from the environment (docs/configuration.md is checked in test_config_doc.py)."""


import pytest

from core.settings import SETTINGS, SettingsError, load_settings

def test_defaults_without_environment():
    values = load_settings({})
    assert values["PORT"] == 5050 and values["RECOGNIZER"] == "whisper" and values["SYNTHESIZER"] == "piper"
    assert values["ENDPOINT_SILENCE_MS"] == 600 and values["WARM_UP"] is True


def test_environment_values_are_typed_and_overrides_win():
    values = load_settings({"PORT": "8080", "WARM_UP": "no", "RECOGNIZER": "Google", "PUBLIC_URL": "https://x.ngrok.app/"}, {"PORT": 1})
    assert values["PORT"] == 1 and values["WARM_UP"] is False and values["RECOGNIZER"] == "google"
    assert values["PUBLIC_URL"] == "https://x.ngrok.app"


@pytest.mark.parametrize("name,value", [("PORT", "eighty"), ("VAD_MODE", "7"), ("RECOGNIZER", "vosk"), ("WARM_UP", "maybe"),
                                        ("PUBLIC_URL", "abc.ngrok.app"), ("RESPONDER_TIMEOUT_S", "-1")])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_the_greeting_follows_the_responder_unless_set():
    assert load_settings({})["GREETING"] == "Hello! Say something and I will repeat it."
    assert load_settings({"RESPONDER": "llm"})["GREETING"] == "Hello! How can I help you?"
    assert load_settings({"RESPONDER": "llm", "GREETING": ""})["GREETING"] == ""
    assert load_settings({"RESPONDER": "mybot:respond"}, {"GREETING": "Hi."})["GREETING"] == "Hi."
