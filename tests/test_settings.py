"""Settings parse from the environment (docs/configuration.md is checked in test_config_doc.py)."""

import dataclasses
import typing

import pytest

from core.settings import SETTINGS, Settings, SettingsError, load_settings


def test_defaults_without_environment():
    values = load_settings({})
    assert values.port == 5050 and values.recognizer == "whisper" and values.synthesizer == "piper"
    assert values.endpoint_silence_ms == 600 and values.warm_up is True


def test_environment_values_are_typed_and_overrides_win():
    values = load_settings({"PORT": "8080", "WARM_UP": "no", "RECOGNIZER": "Google", "PUBLIC_URL": "https://x.ngrok.app/"}, {"PORT": 1})
    assert values.port == 1 and values.warm_up is False and values.recognizer == "google"
    assert values.public_url == "https://x.ngrok.app"


def test_every_setting_is_a_typed_field_with_its_parser_and_help_and_settings_are_frozen():
    assert len(SETTINGS) == len(dataclasses.fields(Settings)) and all(s.help and callable(s.parse) for s in SETTINGS)
    hints = typing.get_type_hints(Settings)
    defaults = load_settings({})
    for setting in SETTINGS:
        value = getattr(defaults, setting.name.lower())
        assert isinstance(value, hints[setting.name.lower()]), setting.name
        if setting.name != "LOG_TRANSCRIPTS":  # its empty default is derived (below)
            assert value == setting.default, setting.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.max_calls = 1


def test_overrides_take_either_name_and_unknown_names_are_refused():
    assert load_settings({}, {"max_calls": 3}).max_calls == load_settings({}, {"MAX_CALLS": 3}).max_calls == 3
    with pytest.raises(SettingsError, match="MAX_CALL\\b"):
        load_settings({}, {"MAX_CALL": 3})


def test_secrets_are_not_in_the_repr():
    secrets = {"TWILIO_AUTH_TOKEN": "s1", "SIGNALWIRE_SIGNING_KEY": "s2", "STREAM_BEARER_TOKEN": "s3", "LLM_API_KEY": "s4",
               "GOOGLE_SPEECH_KEY": "s5", "DASHBOARD_PASSWORD": "s6", "METRICS_TOKEN": "s7", "DATABASE_URL": "postgresql://u:s8@h/db"}
    shown = repr(load_settings(secrets))
    assert "max_calls=25" in shown and not any(f"s{i}" in shown for i in range(1, 9))


@pytest.mark.parametrize("name,value", [("PORT", "eighty"), ("VAD_MODE", "7"), ("RECOGNIZER", "vosk"), ("WARM_UP", "maybe"),
                                        ("PUBLIC_URL", "abc.ngrok.app"), ("RESPONDER_TIMEOUT_S", "-1")])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_the_greeting_follows_the_responder_unless_set():
    assert load_settings({}).greeting == "Hello! Say something and I will repeat it."
    assert load_settings({"RESPONDER": "llm"}).greeting == "Hello! How can I help you?"
    assert load_settings({"RESPONDER": "llm", "GREETING": ""}).greeting == ""
    assert load_settings({"RESPONDER": "mybot:respond"}, {"GREETING": "Hi."}).greeting == "Hi."
    assert load_settings({"RESPONDER": "mybot:respond"}, {"greeting": "Hi."}).greeting == "Hi."


def test_end_of_turn_silences_must_be_ordered_unless_the_policy_is_off():
    with pytest.raises(SettingsError, match="ENDPOINT_COMPLETE_MS <= ENDPOINT_SILENCE_MS"):
        load_settings({"ENDPOINT_COMPLETE_MS": "700"})
    with pytest.raises(SettingsError, match="ENDPOINT_INCOMPLETE_MS"):
        load_settings({"ENDPOINT_INCOMPLETE_MS": "500"})
    assert load_settings({"ENDPOINT_COMPLETE_MS": "0", "ENDPOINT_INCOMPLETE_MS": "500"}).endpoint_complete_ms == 0


def test_the_rest_api_base_url_must_be_a_url():
    assert load_settings({"TWILIO_API_BASE_URL": "http://127.0.0.1:8011/"}).twilio_api_base_url == "http://127.0.0.1:8011"
    with pytest.raises(SettingsError, match="TWILIO_API_BASE_URL"):
        load_settings({"TWILIO_API_BASE_URL": "127.0.0.1:8011"})
