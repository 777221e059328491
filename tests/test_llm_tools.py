"""Tools for the language model: schemas from typed functions, running them, the built-in call tools."""

import enum
import sys
import threading
import time
import types
from typing import Literal, Optional

import gevent
import pytest

from core.responder import Goodbye, ToolCall, Transfer
from core.dial_targets import normalize_dial_target as normalize_target
from responders.call_tools import CallTools, parse_targets
from responders.tools import (ToolDefinitionError, _wait_in_thread, _wait_on_hub, ToolTimeout, load_tools, make_tool,
                              parse_docstring, run_tool)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def weather(city: str, days: int = 1, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Tell the weather forecast
    for a city.

    More prose that is not the summary.

    Args:
        city: the city's name,
            as the caller said it.
        days (int): how many days ahead.
        unit: the temperature unit.

    Returns:
        The forecast.
    """
    return f"{city}: sunny for {days} day(s), in {unit}"


def paint(colors: list[Color], ratio: float, glossy: bool, note: Optional[str] = None, *, coats: int | None) -> dict:
    return {"colors": [c.value for c in colors], "ratio": ratio, "glossy": glossy, "note": note, "coats": coats}


def test_a_schema_from_hints_and_a_google_docstring():
    tool = make_tool(weather)
    assert tool.spec == {"type": "function", "function": {
        "name": "weather",
        "description": "Tell the weather forecast for a city.",
        "parameters": {"type": "object", "additionalProperties": False, "required": ["city"], "properties": {
            "city": {"type": "string", "description": "the city's name, as the caller said it."},
            "days": {"type": "integer", "description": "how many days ahead.", "default": 1},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "the temperature unit.",
                     "default": "celsius"},
        }},
    }}


def test_lists_of_enums_floats_bools_and_optionals_without_a_docstring():
    tool = make_tool(paint)
    assert tool.description == "" and "description" not in tool.spec["function"]
    assert tool.parameters["required"] == ["colors", "ratio", "glossy"]  # Optional: not required, even without a default
    assert tool.parameters["properties"] == {
        "colors": {"type": "array", "items": {"type": "string", "enum": ["red", "blue"]}},
        "ratio": {"type": "number"}, "glossy": {"type": "boolean"}, "note": {"type": "string"}, "coats": {"type": "integer"},
    }
    # The model's JSON is converted: enum values to members, an integer to a float, an absent Optional to None.
    assert tool.arguments({"colors": ["blue"], "ratio": 2, "glossy": True}) == {
        "colors": [Color.BLUE], "ratio": 2.0, "glossy": True, "coats": None}


@pytest.mark.parametrize("arguments, message", [
    ({"ratio": 1.0, "glossy": True}, "missing argument colors"),
    ({"colors": [], "ratio": 1.0, "glossy": True, "shade": 3}, "unknown argument"),
    ({"colors": ["green"], "ratio": 1.0, "glossy": True}, r'colors\[0\] must be one of \["red", "blue"\]'),
    ({"colors": [], "ratio": "1", "glossy": True}, "ratio must be number"),
    ({"colors": [], "ratio": 1.0, "glossy": 1}, "glossy must be boolean"),
    ({"colors": "red", "ratio": 1.0, "glossy": True}, "colors must be an array"),
])
def test_arguments_that_do_not_fit_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        make_tool(paint).arguments(arguments)


def test_a_literal_refuses_true_for_1():
    def pick(level: Literal[1, 2]) -> int:
        return level

    tool = make_tool(pick)
    assert tool.parameters["properties"]["level"] == {"type": "integer", "enum": [1, 2]}
    assert tool.arguments({"level": 2}) == {"level": 2}
    with pytest.raises(ValueError, match="level must be one of"):
        tool.arguments({"level": True})


@pytest.mark.parametrize("source, message", [
    ("def f(x): pass", "tool .*f, parameter x: no type hint"),
    ("def f(x: dict): pass", "f, parameter x: unsupported type dict"),
    ("def f(x: list): pass", "f, parameter x: list needs an item type"),
    ("def f(x: int | str): pass", "f, parameter x: unsupported type"),
    ("def f(*names: str): pass", "f, parameter names: \\*args"),
    ("async def f(x: str): pass", "an async function cannot be a tool"),
    ("def f(x: 'Missing'): pass", "cannot read its signature"),
])
def test_a_function_that_cannot_be_a_tool_is_named_with_its_parameter(source, message):
    namespace: dict = {}
    exec(source, namespace)
    with pytest.raises(ToolDefinitionError, match=message):
        make_tool(namespace["f"])


def test_the_tools_of_a_module_are_its_own_public_functions_or_its_all(monkeypatch):
    def module(name, source):
        mod = types.ModuleType(name)
        exec(source, mod.__dict__)
        monkeypatch.setitem(sys.modules, name, mod)

    source = "from os.path import join\ndef b(x: str): pass\ndef _hidden(x: str): pass\ndef a(y: int): pass\nLIMIT = 3\n"
    module("tools_plain", source)
    assert [t.name for t in load_tools("tools_plain")] == ["b", "a"]  # file order; not join (imported) nor _hidden
    module("tools_all", source + "__all__ = ['a', 'LIMIT', '_hidden']\n")
    assert [t.name for t in load_tools("tools_all")] == ["a", "_hidden"]  # __all__ decides, constants skipped
    module("tools_imported", source + "__all__ = ['a', 'join']\n")
    with pytest.raises(ToolDefinitionError, match="join, parameter a: no type hint"):
        load_tools("tools_imported")  # what __all__ lists is offered, so it must be typed
    module("tools_none", "import os\nLIMIT = 3\n")
    with pytest.raises(ToolDefinitionError, match="no public function"):
        load_tools("tools_none")
    with pytest.raises(ToolDefinitionError, match="cannot import"):
        load_tools("no_such_tools_module")


def test_the_example_tools_module_loads():
    tools = {tool.name: tool for tool in load_tools("examples.clinic_tools")}
    assert list(tools) == ["next_appointment", "free_slots"]  # not the Clinic enum
    slots = tools["free_slots"].parameters
    assert slots["required"] == ["day"] and slots["properties"]["clinic"] == {
        "type": "string", "enum": ["north", "south"], "description": "which of our two clinics.", "default": "north"}
    assert run_tool(tools["free_slots"], {"day": "monday", "clinic": "south", "after_hour": 12}, 2).result == '["monday at 15:00"]'
    assert run_tool(tools["next_appointment"], {"name": "Zed"}, 2).error == "LookupError: no appointment found for Zed"


def test_docstring_sections():
    assert parse_docstring("") == ("", {})
    assert parse_docstring("One line.\nArgs:\n    a: first.\n    b:\n        second,\n        long.\nRaises:\n    X: never.") == (
        "One line.", {"a": "first.", "b": "second, long."})


def test_running_a_tool_success_error_timeout_and_bad_arguments():
    def lookup(name: str, slow_s: float = 0.0) -> dict:
        time.sleep(slow_s)
        if name == "boom":
            raise KeyError("boom")
        return {"name": name, "when": "Tuesday"}

    tool = make_tool(lookup)
    done = run_tool(tool, {"name": "Ann"}, timeout_s=2)
    assert done == ToolCall("lookup", {"name": "Ann"}, '{"name": "Ann", "when": "Tuesday"}', None, done.elapsed_ms)
    assert run_tool(tool, {"name": "boom"}, 2).error == "KeyError: 'boom'"
    assert run_tool(tool, {"name": 5}, 2).error == "bad arguments: name must be string, got 5"
    began = time.monotonic()
    late = run_tool(tool, {"name": "Ann", "slow_s": 1.0}, timeout_s=0.2)
    assert late.error == "no answer within 0.2 s" and late.result is None
    assert 150 <= late.elapsed_ms < 600 and time.monotonic() - began < 0.6  # the wait ends; the thread runs on


def test_on_the_hub_a_blocking_tool_runs_in_a_thread_and_other_greenlets_go_on():
    ticks, threads = [], []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)

    def blocking():
        threads.append(threading.get_ident())
        time.sleep(0.3)  # not patched here: it would stall every greenlet if it ran on the hub
        return "done"

    ticking = gevent.spawn(ticker)
    try:
        assert _wait_on_hub(blocking, 2) == (True, "done")
        assert threads[0] != threading.get_ident() and len(ticks) >= 10
        with pytest.raises(ToolTimeout):
            _wait_on_hub(lambda: time.sleep(0.5), 0.1)
        returned, error = _wait_on_hub(lambda: 1 / 0, 1)
        assert not returned and isinstance(error, ZeroDivisionError)
    finally:
        ticking.kill()
    returned, error = _wait_in_thread(lambda: 1 / 0, 1)
    assert not returned and isinstance(error, ZeroDivisionError)


def test_the_workers_own_timeout_while_a_tool_runs_is_not_taken_for_the_tools_error(monkeypatch):
    def slow(seconds: float) -> str:
        time.sleep(seconds)
        return "late"

    monkeypatch.setattr("responders.tools.is_module_patched", lambda name: True)  # as in the server: on the hub
    with pytest.raises(TimeoutError):  # what HubStream raises when RESPONDER_TIMEOUT_S is up
        with gevent.Timeout(0.1, TimeoutError):
            run_tool(make_tool(slow), {"seconds": 0.5}, timeout_s=2)


@pytest.mark.parametrize("text, target", [
    ("+15551234567", "+15551234567"), (" +1 (555) 123-4567 ", "+15551234567"), ("+44.20.7946.0018", "+442079460018"),
    ("sip:desk@example.com", "sip:desk@example.com"), ("SIP:desk@pbx.example.com;transport=tls", "sip:desk@pbx.example.com;transport=tls"),
])
def test_transfer_targets_e164_or_sip(text, target):
    assert normalize_target(text) == target


@pytest.mark.parametrize("text", ["5551234567", "+1555", "+1555123456789012", "+05551234567", "tel:+15551234567",
                                  "sip:", "sip:a b@example.com", "+1555abc4567", ""])
def test_transfer_targets_refused(text):
    with pytest.raises(ValueError, match="not an E.164 number"):
        normalize_target(text)


def test_end_call_and_transfer_call_become_pieces_and_a_target_off_the_list_is_refused():
    tools = CallTools(transfer_targets=parse_targets("+15551234567, sip:desk@example.com"))
    [end_spec, transfer_spec] = tools.specs
    assert end_spec["function"]["name"] == "end_call" and end_spec["function"]["parameters"]["required"] == []
    assert transfer_spec["function"]["parameters"]["properties"]["target"]["enum"] == ["+15551234567", "sip:desk@example.com"]

    record, piece = tools.act("end_call", {"message": "Bye now!"}, spoke=False)
    assert piece == "Bye now!" and isinstance(piece, Goodbye) and record.error is None and record.name == "end_call"
    assert tools.act("end_call", {}, spoke=False)[1] == "Goodbye!"
    assert tools.act("end_call", {}, spoke=True)[1] == " "  # it said goodbye already: only the hang-up
    record, piece = tools.act("transfer_call", {"target": "+1 555 123 4567", "announcement": "Hold on. "}, spoke=True)
    assert piece == Transfer("+15551234567", "Hold on.") and record.result == '"transferring the call to +15551234567"'
    record, piece = tools.act("transfer_call", {"target": "+19005550000"}, spoke=True)
    assert piece is None and record.error.startswith("+19005550000 is not an allowed transfer target")
    record, piece = tools.act("transfer_call", {"target": "the manager"}, spoke=True)
    assert piece is None and "not an E.164 number" in record.error
    assert "enum" not in CallTools().specs[1]["function"]["parameters"]["properties"]["target"]
    assert [s["function"]["name"] for s in CallTools(["transfer_call"]).specs] == ["transfer_call"]
    with pytest.raises(ValueError, match="unknown built-in tool"):
        CallTools(["hang_up"])


def test_a_tool_call_reads_in_the_record():
    assert ToolCall("lookup", {"name": "Ann"}, '"Tuesday"', None, 12).transcript == 'lookup({"name": "Ann"}) -> "Tuesday"'
    assert ToolCall("lookup", {}, None, "KeyError: 'x'", 3).transcript == "lookup({}) -> error: KeyError: 'x'"
