"""Python functions as tools of a language model: their JSON schemas, and running them off the hub.

``load_tools("mymodule")`` (``LLM_TOOLS``) makes a :class:`Tool` of each public function of a
module: those in its ``__all__`` if it has one, else those defined in it (not imported) whose names
do not start with ``_``. A tool's schema is the OpenAI chat completions ``tools`` entry
(``{"type": "function", "function": {"name", "description", "parameters"}}``, the parameters a
JSON Schema object), made from the type hints and the docstring: its first paragraph is the
description, and the lines of a Google-style ``Args:`` section describe the parameters.

Supported parameter types: ``str``, ``int``, ``float``, ``bool``, ``Literal[...]``, ``Enum``
subclasses, ``list[X]`` of any of these, and ``X | None`` (``Optional[X]``). A parameter with a
default or ``None`` allowed is not required. Anything else (no hint, ``dict``, ``*args``, an
``async def``) is refused when the tools are loaded, naming the function and parameter.

:func:`run_tool` runs one call: the model's JSON arguments are checked and converted (an enum's
value becomes the member), and the function runs in another thread, so a tool may block on a
database or an HTTP request, under a timeout.
"""

from __future__ import annotations

import enum
import functools
import importlib
import inspect
import json
import re
import threading
import time
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from gevent.monkey import is_module_patched

from core.responder import ResponderConfigError, ToolCall
from runtime.blocking import spawn_engine

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what the chat completions API accepts as a function name
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


class ToolDefinitionError(ResponderConfigError):
    """``LLM_TOOLS`` names no importable module, or one of its functions cannot be a tool (the
    message names the function and parameter)."""


class ToolArgumentError(ValueError):
    """The model's arguments do not fit the tool's parameters (the message says how)."""


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: Any  # the resolved type hint
    required: bool
    default: Any  # inspect.Parameter.empty when there is none


@dataclass(frozen=True)
class Tool:
    """One function the model may call.

    Attributes:
        name: the function's name, as the model calls it.
        description: the docstring's first paragraph (``""`` without a docstring).
        parameters: the JSON Schema object of its arguments.
        function: the function itself.
        signature: its parameters, to convert the model's arguments.
    """

    name: str
    description: str
    parameters: dict
    function: Callable
    signature: tuple[Parameter, ...]

    @property
    def spec(self) -> dict:
        """The ``tools`` entry of a chat completions request."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    def arguments(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments to call the function with, from the model's parsed JSON object.

        Raises:
            ToolArgumentError: an unknown or missing argument, or a value of the wrong type or
                outside a ``Literal``/``Enum``.
        """
        unknown = sorted(set(given) - {p.name for p in self.signature})
        if unknown:
            raise ToolArgumentError(f"unknown argument(s) {', '.join(unknown)}")
        kwargs = {}
        for parameter in self.signature:
            if parameter.name in given:
                kwargs[parameter.name] = _convert(given[parameter.name], parameter.annotation, parameter.name)
            elif parameter.required:
                raise ToolArgumentError(f"missing argument {parameter.name}")
            elif parameter.default is inspect.Parameter.empty:
                kwargs[parameter.name] = None  # X | None without a default
        return kwargs


def load_tools(module_name: str) -> list[Tool]:
    """The tools of the module ``module_name`` (``LLM_TOOLS``), in their order in ``__all__`` or in the file.

    Raises:
        ToolDefinitionError: the module does not import, has no public function, or a function
            cannot be a tool (see :func:`make_tool`).
    """
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ToolDefinitionError(f"LLM_TOOLS={module_name!r}: cannot import it: {exc}") from exc
    names = getattr(module, "__all__", None)
    if names is not None:
        functions = [getattr(module, name, None) for name in names]
        functions = [f for f in functions if inspect.isroutine(f)]  # __all__ may also list constants and classes
    else:
        functions = [value for name, value in vars(module).items()
                     if not name.startswith("_") and inspect.isfunction(value) and value.__module__ == module.__name__]
    if not functions:
        raise ToolDefinitionError(f"LLM_TOOLS={module_name!r}: the module has no public function")
    return [make_tool(f) for f in functions]


def make_tool(function: Callable) -> Tool:
    """A :class:`Tool` from a typed function (see the module docstring for the types).

    Raises:
        ToolDefinitionError: names the function and the parameter: no type hint, an unsupported
            type, ``*args``/``**kwargs`` or positional-only, an ``async def``, a name the API
            refuses.
    """
    where = f"tool {getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', function)}"
    if inspect.iscoroutinefunction(function):
        raise ToolDefinitionError(f"{where}: an async function cannot be a tool; make it a plain def")
    name = function.__name__
    if not _NAME.match(name):
        raise ToolDefinitionError(f"{where}: the name must be 1-64 letters, digits, _ or -")
    try:
        hints = typing.get_type_hints(function)
        signature = inspect.signature(function)
    except (NameError, TypeError, ValueError) as exc:
        raise ToolDefinitionError(f"{where}: cannot read its signature: {exc}") from exc
    summary, described = parse_docstring(inspect.getdoc(function) or "")
    properties: dict[str, dict] = {}
    required: list[str] = []
    parameters: list[Parameter] = []
    for p in signature.parameters.values():
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise ToolDefinitionError(f"{where}, parameter {p.name}: *args, **kwargs and positional-only "
                                      "parameters cannot be tool parameters (the model passes named arguments)")
        if p.name not in hints:
            raise ToolDefinitionError(f"{where}, parameter {p.name}: no type hint (e.g. {p.name}: str)")
        annotation = hints[p.name]
        optional, inner = _unwrap_optional(annotation)
        try:
            schema = json_schema(inner)
        except TypeError as exc:
            raise ToolDefinitionError(f"{where}, parameter {p.name}: {exc}") from None
        if p.name in described:
            schema["description"] = described[p.name]
        if p.default is not p.empty and _is_json_scalar(p.default):
            schema["default"] = p.default.value if isinstance(p.default, enum.Enum) else p.default
        is_required = p.default is p.empty and not optional
        if is_required:
            required.append(p.name)
        properties[p.name] = schema
        parameters.append(Parameter(p.name, annotation, is_required, p.default))
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return Tool(name, summary, schema, function, tuple(parameters))


def json_schema(annotation: Any) -> dict:
    """The JSON Schema of one (non-optional) parameter type.

    Raises:
        TypeError: an unsupported type (the message says which and what is supported).
    """
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_schema([member.value for member in annotation], f"enum {annotation.__name__}")
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return _enum_schema(list(typing.get_args(annotation)), str(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation) or (None,)
        if item is None:
            raise TypeError("list needs an item type, e.g. list[str]")
        return {"type": "array", "items": json_schema(item)}
    if annotation is list:
        raise TypeError("list needs an item type, e.g. list[str]")
    raise TypeError(f"unsupported type {getattr(annotation, '__name__', annotation)!s}; "
                    "use str, int, float, bool, Literal[...], an Enum, list[...] or Optional[...] of these")


def _enum_schema(values: list, what: str) -> dict:
    kinds = {type(v) for v in values}
    if not values or not kinds <= set(_SCALARS) or len(kinds) > 1:
        raise TypeError(f"{what}: its values must all be str, or all int")
    return {"type": _SCALARS[kinds.pop()], "enum": values}


def _unwrap_optional(annotation: Any) -> tuple[bool, Any]:
    """``(True, X)`` for ``X | None`` / ``Optional[X]``, else ``(False, annotation)``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return True, args[0]
    return False, annotation


def _is_json_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, enum.Enum))


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """``value`` (parsed JSON) checked against ``annotation`` and converted (enum values to members).

    Raises:
        ToolArgumentError: it does not fit.
    """
    optional, annotation = _unwrap_optional(annotation)
    if value is None and optional:
        return None
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # JSON has one number type: 3 is a fine float
    if annotation in _SCALARS:
        if type(value) is not annotation:  # type(): True is not an int here
            raise ToolArgumentError(f"{where} must be {_SCALARS[annotation]}, got {json.dumps(value)}")
        return value
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            raise ToolArgumentError(f"{where} must be one of {json.dumps([m.value for m in annotation])}, "
                                    f"got {json.dumps(value)}") from None
    if typing.get_origin(annotation) is Literal:
        allowed = typing.get_args(annotation)
        if not any(type(value) is type(a) and value == a for a in allowed):  # type(): True is not 1 here
            raise ToolArgumentError(f"{where} must be one of {json.dumps(list(allowed))}, got {json.dumps(value)}")
        return value
    if typing.get_origin(annotation) is list:
        if not isinstance(value, list):
            raise ToolArgumentError(f"{where} must be an array, got {json.dumps(value)}")
        (item,) = typing.get_args(annotation)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ToolArgumentError(f"{where}: unsupported type")  # make_tool refused it already


_ARGS_SECTION = re.compile(r"^(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """A cleaned docstring's summary (its first paragraph, on one line) and the descriptions of its
    Google-style ``Args:`` section, ``{"name": "description"}`` (continuation lines joined)."""
    lines = doc.strip().splitlines()
    summary_lines = []
    for line in lines:
        if not line.strip() or _ARGS_SECTION.match(line.strip()):
            break
        summary_lines.append(line.strip())
    described: dict[str, str] = {}
    section = next((i for i, line in enumerate(lines) if _ARGS_SECTION.match(line)), None)
    if section is not None:
        indent, current = None, None
        for line in lines[section + 1:]:
            if not line.strip():
                continue
            depth = len(line) - len(line.lstrip())
            if depth == 0:
                break  # the next section (Returns:, Raises:) or prose
            if indent is None:
                indent = depth
            match = _ARG_LINE.match(line.strip()) if depth == indent else None
            if match:
                current = match.group(1)
                described[current] = match.group(2).strip()
            elif current is not None and depth > indent:
                described[current] = f"{described[current]} {line.strip()}".strip()
    return " ".join(summary_lines), described


def run_tool(tool: Tool, arguments: Mapping[str, Any], timeout_s: float) -> ToolCall:
    """Call ``tool`` with the model's parsed ``arguments`` in another thread; wait at most ``timeout_s`` s.

    Never raises for the tool's sake: bad arguments, an exception in the tool, a timeout (the
    thread runs on; Python cannot stop it) and a result that is not JSON all come back as a
    :class:`ToolCall` with ``error`` set. Anything else is JSON text in ``result`` (``default=str``
    for values such as dates).
    """
    began = time.monotonic()
    result = error = None
    try:
        kwargs = tool.arguments(arguments)
        # Only the tool's outcome is caught: an exception raised while waiting (the worker's own
        # timeout for the reply, a barge-in killing the job) is not the tool's and goes on up.
        returned, value = call_off_hub(functools.partial(tool.function, **kwargs), timeout_s)
        if not returned:
            error = f"{type(value).__name__}: {value}"  # the tool's own failure: the model is told and can say so
        else:
            result = json.dumps(value, ensure_ascii=False, default=str)
    except ToolArgumentError as exc:
        error = f"bad arguments: {exc}"
    except ToolTimeout:
        error = f"no answer within {timeout_s:g} s"
    except ValueError as exc:  # json.dumps: a circular structure
        error = f"the result is not JSON: {exc}"
    return ToolCall(tool.name, dict(arguments), result, error, round((time.monotonic() - began) * 1000))


class ToolTimeout(Exception):
    """A tool did not return within its timeout."""


def call_off_hub(function: Callable[[], Any], timeout_s: float) -> tuple[bool, Any]:
    """``function()`` in another thread, waited for at most ``timeout_s`` s: ``(True, its value)``
    or ``(False, the exception it raised)``.

    Where the LLM responder's generator runs decides how to wait (``runtime.reply_stream``): with
    gevent's patched sockets it runs on the hub, so the function goes to the engines' thread pool
    and this greenlet waits without blocking other calls; without them (tests, tools) it runs in
    an ordinary thread, which may simply block on a helper thread.

    Raises:
        ToolTimeout: not done in time (the thread runs on).
    """
    if is_module_patched("socket"):
        return _wait_on_hub(function, timeout_s)
    return _wait_in_thread(function, timeout_s)


def _wait_on_hub(function: Callable[[], Any], timeout_s: float) -> tuple[bool, Any]:
    # The engines' pool, not gevent's default one (database saves, files): a hung tool must not
    # hold a thread those need (runtime.blocking).
    job = spawn_engine(function)
    job.wait(timeout_s)
    if not job.ready():
        raise ToolTimeout()
    return (True, job.value) if job.successful() else (False, job.exception)


def _wait_in_thread(function: Callable[[], Any], timeout_s: float) -> tuple[bool, Any]:
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, function()))
        except Exception as exc:  # handed to the waiting thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="llm-tool", daemon=True)  # daemon: a hung tool does not block exit
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        raise ToolTimeout()
    return outcome[0]
