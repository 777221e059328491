"""core.records.Turn: typed optional fields, and the API shape of ``to_json``."""

import json

from core.records import Turn


def test_unset_optional_fields_leave_their_keys_out():
    turn = Turn("caller", "hello", 20, 620)
    assert turn.to_json() == {"speaker": "caller", "text": "hello", "start_ms": 20, "end_ms": 620}
    assert list(Turn("bot", "Hi.", 700, None).to_json()) == ["speaker", "text", "start_ms", "end_ms"]


def test_set_fields_appear_in_a_fixed_order_and_falsy_values_are_kept():
    turn = Turn("bot", "One. Two.", 700, 900, error="synthesis failed", latency_ms={"total": 80}, interrupted=True, heard="")
    data = turn.to_json()
    assert list(data) == ["speaker", "text", "start_ms", "end_ms", "error", "latency_ms", "interrupted", "heard"]
    assert data["heard"] == "" and data["interrupted"] is True and data["latency_ms"] == {"total": 80}
    assert Turn("caller", "", 0, 40, dtmf="12#").to_json()["dtmf"] == "12#"
    json.dumps(data)


def test_to_json_reflects_later_changes_to_the_latency_dict():
    latency = {"total": 80}
    turn = Turn("bot", "Hi.", 700, None, latency_ms=latency)
    latency["first_mark"] = 300  # the session adds it when the first mark is echoed
    assert turn.to_json()["latency_ms"] == {"total": 80, "first_mark": 300}
