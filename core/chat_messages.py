"""A call's history as the ``messages`` of an OpenAI-style chat completions request.

Sans-I/O. The history is ``CallContext.history``: the call record's turns as dicts
(``core.records.Turn.to_json``). A bot turn the caller interrupted carries ``interrupted``
and ``heard`` (the sentences whose playback finished before the barge-in, known from the
mark echoes, T-WS "mark"); the model is shown only what was heard, so it does not believe it
said what the caller never got. Roles and the message shape are those of the chat
completions API (``{"role": "system"|"user"|"assistant", "content": str}``).

Turns of the language model's tool calls (``speaker: "tool"``) are left out: a ``tool`` message
must answer an assistant message's ``tool_calls`` by id, which a record's text cannot rebuild
faithfully, and the bot's reply after a tool call already says what the model made of its result.
"""

from __future__ import annotations

from typing import Iterable, Mapping

KEYPAD_NOTE = "(The caller pressed {keys} on the keypad.)"


def chat_messages(system_prompt: str, history: Iterable[Mapping], *, text: str = "", dtmf: str | None = None) -> list[dict[str, str]]:
    """Build the ``messages`` list for the reply to the caller's latest turn.

    Args:
        system_prompt: the system message; ``""`` for none.
        history: the call's turns, oldest first: dicts with ``speaker`` (``"caller"``,
            ``"bot"``; ``"tool"`` turns are skipped), ``text``, and optionally ``dtmf``, ``interrupted``, ``heard``.
        text: the turn being answered (its transcript); appended as a user message unless the
            history already ends with it.
        dtmf: the digits being answered, for a key-press turn.

    Returns:
        Messages, oldest first. Consecutive messages of the same role are joined (the caller's
        turn split by a pause, a greeting followed by an apology), since some servers reject
        two user messages in a row. A bot turn of which nothing was heard is left out.
    """
    messages: list[dict[str, str]] = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt.strip()})
    for turn in history:
        if turn.get("speaker") in (None, "caller", "bot"):  # not "tool" (see the module docstring)
            _append(messages, *_message(turn))
    latest = _caller_content(text, dtmf)
    if latest and not (messages and messages[-1]["role"] == "user" and messages[-1]["content"].endswith(latest)):
        _append(messages, "user", latest)
    return messages


def _message(turn: Mapping) -> tuple[str, str]:
    if turn.get("speaker") == "bot":
        content = turn.get("heard", "") if turn.get("interrupted") else turn.get("text", "")
        return "assistant", (content or "").strip()
    return "user", _caller_content(turn.get("text") or "", turn.get("dtmf"))


def _caller_content(text: str, dtmf: str | None) -> str:
    if dtmf:
        return KEYPAD_NOTE.format(keys=" ".join(dtmf))
    return text.strip()


def _append(messages: list[dict[str, str]], role: str, content: str) -> None:
    if not content:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1] = {"role": role, "content": f"{messages[-1]['content']} {content}"}
    else:
        messages.append({"role": role, "content": content})
