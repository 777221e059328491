"""Build an engine object from its name and options (shared by make_recognizer/make_synthesizer)."""

import inspect
from typing import Any

from speech.errors import EngineConfigError


def build_engine(kind: str, registry: dict[str, type], engine: str, options: dict[str, Any]) -> Any:
    """Instantiate ``registry[engine](**options)``, turning bad names or options into EngineConfigError.

    Args:
        kind: "recognition" or "synthesis", for the error message.
        registry: engine name → class.
        engine: the requested engine name.
        options: keyword arguments for the class.

    Returns:
        The engine object.

    Raises:
        EngineConfigError: unknown engine name (the message lists the valid names), an
            option the engine does not take, or an invalid option value.
    """
    try:
        cls = registry[engine]
    except (KeyError, TypeError):
        valid = ", ".join(repr(name) for name in sorted(registry))
        raise EngineConfigError(f"unknown {kind} engine {engine!r}; valid engines: {valid}") from None
    try:
        # Check the option names against the signature so a TypeError raised
        # inside __init__ is never mistaken for a bad option.
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise EngineConfigError(f"{kind} engine {engine!r}: {exc}") from None
    return cls(**options)
