"""A call's history as chat completions messages."""

from core.chat_messages import chat_messages


def test_roles_heard_text_keys_and_joined_runs():
    history = [
        {"speaker": "bot", "text": "Hello!"},
        {"speaker": "bot", "text": "Sorry, something went wrong."},
        {"speaker": "caller", "text": "What is on the menu?"},
        {"speaker": "bot", "text": "Soup. Bread. Cake.", "interrupted": True, "heard": "Soup."},
        {"speaker": "caller", "text": "", "dtmf": "12#"},
        {"speaker": "bot", "text": "Never heard.", "interrupted": True, "heard": ""},
        {"speaker": "caller", "text": "", "error": "recognition failed"},
        {"speaker": "caller", "text": "And drinks?"},
    ]
    assert chat_messages("Be brief.", history, text="And drinks?") == [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Hello! Sorry, something went wrong."},
        {"role": "user", "content": "What is on the menu?"},
        {"role": "assistant", "content": "Soup."},
        {"role": "user", "content": "(The caller pressed 1 2 # on the keypad.) And drinks?"},
    ]


def test_the_turn_being_answered_is_added_when_the_history_lacks_it():
    assert chat_messages("", [{"speaker": "bot", "text": "Hi."}], text="hello") == [
        {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "hello"},
    ]
    assert chat_messages("", [], dtmf="5") == [{"role": "user", "content": "(The caller pressed 5 on the keypad.)"}]
    assert chat_messages("", [{"speaker": "caller", "text": "", "dtmf": "5"}], dtmf="5") == [
        {"role": "user", "content": "(The caller pressed 5 on the keypad.)"},
    ]


def test_tool_turns_are_left_out():
    history = [
        {"speaker": "caller", "text": "When is my appointment?"},
        {"speaker": "tool", "text": 'next_appointment({"name": "Ann"}) -> "Tuesday"'},
        {"speaker": "bot", "text": "On Tuesday."},
    ]
    assert chat_messages("", history) == [
        {"role": "user", "content": "When is my appointment?"}, {"role": "assistant", "content": "On Tuesday."},
    ]
