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
