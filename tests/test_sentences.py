from core.sentences import split_sentences


def test_splits_on_sentence_punctuation():
    assert split_sentences("Hello there, caller. How can I help? Tell me more!") == ["Hello there, caller.", "How can I help?", "Tell me more!"]


def test_short_sentences_are_joined():
    assert split_sentences("Yes. I can do that for you today.") == ["Yes. I can do that for you today."]
    assert split_sentences("I can do that for you today. Ok.") == ["I can do that for you today. Ok."]


def test_long_sentences_are_cut_at_clauses():
    text = ", ".join(["this is a fairly long clause of words"] * 10) + "."
    pieces = split_sentences(text, max_chars=100)
    assert len(pieces) > 1 and all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces) == text


def test_blank_text():
    assert split_sentences("   ") == []


def test_a_long_first_sentence_gives_up_its_first_clause_so_audio_starts_sooner():
    text = "You said: and so my fellow Americans, ask not what your country can do for you."
    assert split_sentences(text) == ["You said:", "and so my fellow Americans, ask not what your country can do for you."]
    assert split_sentences("You said: hello there.") == ["You said: hello there."]
    assert split_sentences("Well, " + "word " * 20 + "end.")[0] == "Well, " + "word " * 20 + "end."  # one-word clause: kept
