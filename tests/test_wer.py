import pytest

from tools.wer import normalize_text, word_error_rate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1, 2, 3.", "one two three"),
        ("One, two, THREE!", "one two three"),
        ("And so my fellow Americans, ask not", "and so my fellow americans ask not"),
        ("Don't stop; it's fine.", "dont stop its fine"),
        ("1,000 and 2.5", "one thousand and two point five"),
        ("21 people, 1961", "twenty one people one thousand nine hundred sixty one"),
        ("100 101 115", "one hundred one hundred one one hundred fifteen"),
        ("twenty-one", "twenty one"),
        ("  \n...  ", ""),
    ],
)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


def test_digits_and_words_score_the_same():
    assert word_error_rate("one two three", "1, 2, 3.") == 0.0


def test_counts_substitutions_deletions_insertions():
    reference = "ask not what your country can do for you"  # 9 words
    assert word_error_rate(reference, "ask not what your county can do for you") == pytest.approx(1 / 9)
    assert word_error_rate(reference, "ask what your country can do for you") == pytest.approx(1 / 9)
    assert word_error_rate(reference, "ask not what your country can do for you now") == pytest.approx(1 / 9)
    assert word_error_rate(reference, "") == 1.0


def test_empty_reference_is_an_error():
    with pytest.raises(ValueError):
        word_error_rate(" ... ", "anything")
