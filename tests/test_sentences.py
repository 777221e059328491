from hypothesis import given, strategies as st

from core.responder import Play
from core.sentences import SentenceStream, reply_text, split_reply, split_sentences


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


# -- replies with audio prompts (Play) ------------------------------------------------------

HOLD = Play("prompts/hold.wav")


def test_a_reply_s_items_are_its_texts_sentences_and_its_prompts_in_order():
    assert split_reply(["Please hold. I will check.", HOLD, "Thanks for waiting."]) == [
        "Please hold.", "I will check.", HOLD, "Thanks for waiting."]
    assert split_reply(HOLD) == [HOLD] and split_reply(("Hi there, caller.",)) == ["Hi there, caller."]
    assert split_reply("Yes. I can do that.") == split_sentences("Yes. I can do that.")
    assert split_reply(None) == [] and split_reply("  ") == [] and split_reply(["", None]) == []
    assert split_reply(["Hi.", "Ok."]) == ["Hi.", "Ok."]  # short texts of a list are not joined across items


def test_a_reply_s_record_text_shows_a_prompt_as_its_transcript():
    assert reply_text(["Please hold.", HOLD, "Thanks."]) == "Please hold. [played hold.wav] Thanks."
    assert reply_text([Play("/srv/audio/jingle.mp3")]) == "[played jingle.mp3]"


def test_a_streamed_play_flushes_the_text_before_it_however_short():
    splitter = SentenceStream()
    assert splitter.push("Please ") == []
    assert splitter.push("hold") == []
    assert splitter.push(HOLD) == ["Please hold", HOLD]
    assert splitter.push(HOLD) == [HOLD]  # nothing waiting: the prompt alone
    assert splitter.push(" Thanks for waiting. And") == ["Thanks for waiting."]
    assert splitter.finish() == ["And"]


def test_after_a_streamed_play_the_first_clause_is_not_split_off():
    # The caller hears the prompt first: the next sentence need not hurry.
    text = "Here is what I found about your order, which shipped yesterday from the warehouse in Ohio, "
    splitter = SentenceStream()
    assert splitter.push(HOLD) == [HOLD]
    assert splitter.push(text) == []
    fresh = SentenceStream()
    assert fresh.push(text) == ["Here is what I found about your order,"]
