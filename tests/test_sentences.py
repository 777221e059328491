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


from hypothesis import given, strategies as st

from core.sentences import SentenceStream


def stream_pieces(text: str, step: int) -> list[str]:
    splitter = SentenceStream()
    pieces = []
    for start in range(0, len(text), step):
        pieces += splitter.push(text[start : start + step])
    return pieces + splitter.finish()


def test_a_stream_yields_each_sentence_once_it_is_complete():
    splitter = SentenceStream()
    assert splitter.push("Hello there, caller. How can") == ["Hello there, caller."]
    assert splitter.push(" I help?") == []  # the sentence end is known only once whitespace follows
    assert splitter.push(" Yes.") == ["How can I help?"]
    assert splitter.push(" I can do that.") == []  # "Yes." is too short alone: it waits for the next sentence
    assert splitter.finish() == ["Yes. I can do that."]


def test_a_long_first_sentence_gives_up_its_first_clause_before_it_ends():
    splitter = SentenceStream()
    assert splitter.push("You said: and so my fellow Americans, ask not what your") == []
    assert splitter.push(" country can") == ["You said:"]
    assert stream_pieces("You said: and so my fellow Americans, ask not what your country can do for you.", 1) == \
        ["You said:", "and so my fellow Americans, ask not what your country can do for you."]


def test_a_long_run_on_sentence_is_cut_at_its_last_clause_within_the_limit():
    text = "Ok. " + ", ".join(["this is a fairly long clause of words"] * 10) + "."
    pieces = stream_pieces(text, 7)
    assert all(len(p) <= 200 for p in pieces) and len(pieces) >= 3
    assert " ".join(pieces) == text


@given(st.text(alphabet=st.sampled_from("ab .,!?;:\n'\")"), max_size=400), st.integers(1, 50))
def test_streamed_pieces_join_to_the_text_whatever_the_chunking(text, step):
    pieces = stream_pieces(text, step)
    assert all(pieces) and all(p == p.strip() for p in pieces)
    assert " ".join(pieces) == " ".join(text.split())
    assert bool(pieces) == bool(text.strip())
