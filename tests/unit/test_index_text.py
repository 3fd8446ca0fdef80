"""Sentences, passages, query terms, highlights, excerpts and answers of the indexer."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from runtime.errors import ValidationFailed
from services.indexer.domain.text import (
    Passage,
    Span,
    best_sentence,
    chunk_passages,
    estimate_tokens,
    highlight_terms,
    make_excerpt,
    query_terms,
    split_sentences,
)

VOCAB = (
    "search index query ranking passage the a of to kendra trellis e.g. Dr. 3.14 os.path.join "
    "str.split() embeddings vector internationalization fast, slow; (beta) etc."
).split()


def sentences(text: str) -> list[str]:
    return [text[s.begin : s.end] for s in split_sentences(text)]


def random_text(rng: random.Random, n_words: int) -> str:
    parts: list[str] = []
    for _ in range(n_words):
        word = rng.choice(VOCAB)
        if rng.random() < 0.1:
            word = word.capitalize()
        parts.append(word)
        roll = rng.random()
        if roll < 0.08:
            parts.append(rng.choice([". ", "! ", "? "]))
        elif roll < 0.11:
            parts.append(rng.choice(["\n", "\n\n", "\n- ", "\n# ", "\n  "]))
        else:
            parts.append(rng.choice([" ", " ", " ", "  ", "\t"]))
    return "".join(parts)


def covered(text: str, spans: list[tuple[int, int]]) -> bool:
    marks = [False] * len(text)
    for begin, end in spans:
        for i in range(begin, end):
            marks[i] = True
    return all(marks[i] for i, ch in enumerate(text) if not ch.isspace())


# ------------------------------------------------------------------ tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("   ", 0),
        ("Hello, world!", 4),
        ("abcdefgh", 1),
        ("internationalization", 2),
        ("pi is 3.14", 5),
        ("os.path.join()", 7),
    ],
)
def test_estimate_tokens(text: str, expected: int) -> None:
    assert estimate_tokens(text) == expected


# --------------------------------------------------------------- sentences


def test_split_sentences_on_terminal_punctuation() -> None:
    text = "  Trellis indexes documents. Does it rank them? Yes! 42 results came back.  "
    assert sentences(text) == [
        "Trellis indexes documents.",
        "Does it rank them?",
        "Yes!",
        "42 results came back.",
    ]


def test_split_sentences_keeps_abbreviations_decimals_and_dotted_names() -> None:
    text = (
        "Use a helper, e.g. Path or os.path.join for that. Pi is 3.14 and i.e. Not split. "
        "Dr. Smith vs. Mr. Jones met etc. Then str.split() works. Ask Mrs. Lee."
    )
    assert sentences(text) == [
        "Use a helper, e.g. Path or os.path.join for that.",
        "Pi is 3.14 and i.e. Not split.",
        "Dr. Smith vs. Mr. Jones met etc. Then str.split() works.",
        "Ask Mrs. Lee.",
    ]


def test_split_sentences_number_abbreviations_only_before_numbers() -> None:
    text = "See No. 5 and fig. 3 here. The answer is no. Then set it to max. Done."
    assert sentences(text) == [
        "See No. 5 and fig. 3 here.",
        "The answer is no.",
        "Then set it to max.",
        "Done.",
    ]


def test_split_sentences_needs_capital_or_digit_after_the_mark() -> None:
    assert sentences("Version 2.0. next is lower. Then upper.") == [
        "Version 2.0. next is lower.",
        "Then upper.",
    ]


def test_split_sentences_handles_quotes_and_brackets() -> None:
    assert sentences('He said "Stop." Then (he left.) Fine.') == [
        'He said "Stop."',
        "Then (he left.)",
        "Fine.",
    ]


def test_split_sentences_on_blank_lines_headings_and_list_items() -> None:
    text = (
        "Overview\n"
        "Trellis is a search service. It has parts\n"
        "that wrap across lines.\n"
        "\n"
        "no period here\n"
        "\n"
        "# Install\n"
        "Run the installer\n"
        "- first item\n"
        "- second item\n"
        "  continues here\n"
        "3. third item\n"
        "After the list."
    )
    assert sentences(text) == [
        "Overview",
        "Trellis is a search service.",
        "It has parts\nthat wrap across lines.",
        "no period here",
        "# Install",
        "Run the installer",
        "- first item",
        "- second item\n  continues here",
        "3. third item",
        "After the list.",
    ]


def test_split_sentences_keeps_a_setext_heading_with_its_underline() -> None:
    assert sentences("Title\n=====\nBody text here. More.") == [
        "Title\n=====",
        "Body text here.",
        "More.",
    ]


def test_split_sentences_wrapped_prose_is_not_split_at_newlines() -> None:
    text = "The index stores passages and\nvectors for every document it has\nseen so far."
    assert sentences(text) == [text]


@pytest.mark.parametrize("text", ["", " ", "\n\n\t "])
def test_split_sentences_of_blank_text_is_empty(text: str) -> None:
    assert split_sentences(text) == []


def test_split_sentences_spans_are_trimmed_ordered_and_cover_the_text() -> None:
    rng = random.Random(7)
    for _ in range(200):
        text = random_text(rng, rng.randint(0, 80))
        spans = split_sentences(text)
        previous_end = 0
        for span in spans:
            assert previous_end <= span.begin < span.end <= len(text)
            assert not text[span.begin].isspace() and not text[span.end - 1].isspace()
            previous_end = span.end
        assert covered(text, [(s.begin, s.end) for s in spans])


# ---------------------------------------------------------------- passages


def test_chunk_passages_of_empty_text() -> None:
    assert chunk_passages("") == []
    assert chunk_passages(" \n\t ") == []


def test_chunk_passages_packs_whole_sentences_with_overlap() -> None:
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    # Each sentence is 4 tokens (three words and a period).
    passages = chunk_passages(text, max_tokens=8, overlap_sentences=1)
    assert [p.text for p in passages] == [
        "One two three. Four five six.",
        "Four five six. Seven eight nine.",
        "Seven eight nine. Ten eleven twelve.",
    ]
    assert all(p.tokens == 8 for p in passages)
    for p in passages:
        assert text[p.begin : p.end] == p.text


def test_chunk_passages_without_overlap() -> None:
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    passages = chunk_passages(text, max_tokens=8, overlap_sentences=0)
    assert [p.text for p in passages] == [
        "One two three. Four five six.",
        "Seven eight nine. Ten eleven twelve.",
    ]


def test_chunk_passages_single_passage_when_it_fits() -> None:
    text = "Short text. Another one."
    assert chunk_passages(text) == [Passage(text, 0, len(text), 6)]


def test_chunk_passages_drops_overlap_that_would_not_make_progress() -> None:
    # A 4-token sentence then a 7-token one: carrying the first leaves no room for the second.
    text = "One two three. Four five six seven eight nine."
    passages = chunk_passages(text, max_tokens=8, overlap_sentences=1)
    assert [p.text for p in passages] == ["One two three.", "Four five six seven eight nine."]


def test_chunk_passages_overlap_is_capped_to_make_progress() -> None:
    text = "A b. C d. E f. G h. I j."
    passages = chunk_passages(text, max_tokens=9, overlap_sentences=5)
    assert [p.text for p in passages] == [
        "A b. C d. E f.",
        "C d. E f. G h.",
        "E f. G h. I j.",
    ]


def test_chunk_passages_splits_a_huge_sentence_on_word_boundaries() -> None:
    words = [f"w{i}" for i in range(1000)]
    text = "Intro sentence. " + " ".join(words) + ". Outro sentence."
    passages = chunk_passages(text, max_tokens=50, overlap_sentences=1)
    # The short sentence is packed with the first piece of the long one.
    assert passages[0].text.startswith("Intro sentence. w0 w1")
    assert passages[-1].text.endswith("Outro sentence.")
    for p in passages:
        assert p.tokens <= 50
        assert estimate_tokens(p.text) <= 50
        assert text[p.begin : p.end] == p.text
        assert p.begin == 0 or text[p.begin - 1].isspace()
        assert p.end == len(text) or text[p.end].isspace()
    seen = {w.rstrip(".") for p in passages for w in p.text.split()}
    assert set(words) <= seen
    # Pieces of one sentence do not overlap: together they hold each word once.
    assert sum(p.text.count("w") for p in passages) == 1000
    assert covered(text, [(p.begin, p.end) for p in passages])


def test_chunk_passages_cuts_a_single_giant_word() -> None:
    text = "x" * 5000
    passages = chunk_passages(text, max_tokens=3, count=lambda s: len(s) // 100 + 1)
    assert all(p.tokens <= 3 for p in passages)
    assert "".join(p.text for p in passages) == text
    assert covered(text, [(p.begin, p.end) for p in passages])


def test_chunk_passages_uses_the_given_token_counter() -> None:
    text = "Alpha beta. Gamma delta. Epsilon zeta."
    passages = chunk_passages(
        text, max_tokens=4, overlap_sentences=0, count=lambda s: len(s.split())
    )
    assert [p.text for p in passages] == ["Alpha beta. Gamma delta.", "Epsilon zeta."]
    assert [p.tokens for p in passages] == [4, 2]


@pytest.mark.parametrize(
    "kwargs", [{"max_tokens": 0}, {"max_tokens": -5}, {"overlap_sentences": -1}]
)
def test_chunk_passages_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        chunk_passages("Some text.", **kwargs)


def test_chunk_passages_cover_random_texts() -> None:
    rng = random.Random(20260101)
    for _ in range(150):
        text = random_text(rng, rng.randint(0, 300))
        max_tokens = rng.choice([1, 2, 5, 17, 60, 200])
        overlap = rng.choice([0, 1, 2, 3])
        passages = chunk_passages(text, max_tokens=max_tokens, overlap_sentences=overlap)
        if not text.strip():
            assert passages == []
            continue
        assert covered(text, [(p.begin, p.end) for p in passages])
        begins = [p.begin for p in passages]
        assert begins == sorted(begins) and len(set(begins)) == len(begins)
        for p in passages:
            assert p.text == text[p.begin : p.end]
            assert p.tokens <= max_tokens
            assert p.text == p.text.strip()


# ------------------------------------------------------------- query terms


def test_query_terms_drop_stopwords_and_keep_order() -> None:
    assert query_terms("How do I configure the Query Suggestions for a query?") == [
        "configure",
        "query",
        "suggestions",
    ]


def test_query_terms_keep_dotted_identifiers_whole_and_split() -> None:
    assert query_terms("What does os.path.join return?") == [
        "os.path.join",
        "os",
        "path",
        "join",
        "return",
    ]
    assert query_terms("os.path.join return") == ["os.path.join", "os", "path", "join", "return"]


def test_query_terms_keep_stopwords_when_all_are_stopwords() -> None:
    assert query_terms("What is THE it") == ["what", "is", "the", "it"]


def test_query_terms_of_empty_or_punctuation_query() -> None:
    assert query_terms("") == []
    assert query_terms("?!, ...") == []


def test_query_terms_are_distinct_and_lowercase() -> None:
    assert query_terms("Index INDEX index_name v2.0") == ["index", "index_name", "v2.0", "v2", "0"]


# -------------------------------------------------------------- highlights


def spans_text(text: str, spans: list[Span]) -> list[str]:
    return [text[s.begin : s.end] for s in spans]


def test_highlight_terms_matches_whole_words_case_insensitively() -> None:
    text = "Index the INDEX, reindex it; the indexer is not an index."
    assert spans_text(text, highlight_terms(text, ["index"])) == ["Index", "INDEX", "index"]


def test_highlight_terms_matches_simple_suffix_variants() -> None:
    text = "Indexes indexed indexing; queries queried; using uses used; boxes."
    found = spans_text(text, highlight_terms(text, ["index", "query", "use", "box"]))
    assert found == [
        "Indexes",
        "indexed",
        "indexing",
        "queries",
        "queried",
        "using",
        "uses",
        "used",
        "boxes",
    ]


def test_highlight_terms_merges_overlapping_and_adjacent_matches() -> None:
    text = "Call os.path.join now"
    assert highlight_terms(text, ["path", "os.path", "join", "os.path.join"]) == [Span(5, 17)]
    # "os.path" and "join" are separated by a dot, so they stay apart.
    assert highlight_terms(text, ["path", "os.path", "join"]) == [Span(5, 12), Span(13, 17)]
    assert highlight_terms("a-b", ["a", "b"]) == [Span(0, 1), Span(2, 3)]
    assert highlight_terms("foo.bar", ["foo", "bar", "foo.bar"]) == [Span(0, 7)]


def test_highlight_terms_are_sorted_and_disjoint() -> None:
    text = "beta alpha beta gamma alpha"
    spans = highlight_terms(text, ["gamma", "alpha", "beta"])
    assert spans == sorted(spans, key=lambda s: s.begin)
    assert spans_text(text, spans) == ["beta", "alpha", "beta", "gamma", "alpha"]


def test_highlight_terms_match_phrases_across_whitespace() -> None:
    text = "Query   suggestions are\nquery suggestions."
    assert spans_text(text, highlight_terms(text, ["query suggestions"])) == [
        "Query   suggestions",
        "query suggestions",
    ]


def test_highlight_terms_with_no_terms_or_special_characters() -> None:
    assert highlight_terms("anything", []) == []
    assert highlight_terms("anything", ["", "  "]) == []
    assert spans_text("use c++ or c#", highlight_terms("use c++ or c#", ["C++"])) == ["c++"]
    assert spans_text("a (b) c", highlight_terms("a (b) c", ["(b)"])) == ["(b)"]
    assert spans_text("a.*b ab", highlight_terms("a.*b ab", ["a.*b"])) == ["a.*b"]
    assert spans_text("1+1 = 2", highlight_terms("1+1 = 2", ["1"])) == ["1", "1"]


# ---------------------------------------------------------------- excerpts


def assert_excerpt_well_formed(text: str, terms: list[str], max_chars: int) -> None:
    excerpt = make_excerpt(text, terms, max_chars=max_chars)
    body = excerpt.text.removeprefix("...").removesuffix("...")
    normalised = " ".join(text.split())
    assert body in normalised
    start = normalised.index(body) if body else 0
    # Cut on word boundaries: the body starts and ends at whitespace or the ends of the text.
    assert start == 0 or normalised[start - 1] == " "
    end = start + len(body)
    assert end == len(normalised) or normalised[end] == " "
    assert excerpt.text.startswith("...") == (start > 0)
    assert excerpt.text.endswith("...") == (end < len(normalised))
    lowered_terms = [t.lower() for t in terms]
    for h in excerpt.highlights:
        piece = excerpt.text[h.begin : h.end].lower()
        assert any(t in piece for t in lowered_terms), piece


def test_make_excerpt_of_short_text_is_the_whole_text() -> None:
    excerpt = make_excerpt("  Trellis ranks\npassages well.  ", ["passage"])
    assert excerpt.text == "Trellis ranks passages well."
    assert excerpt.highlights == [Span(14, 22)]


def test_make_excerpt_of_empty_text() -> None:
    assert make_excerpt("", ["x"]).text == ""
    assert make_excerpt("   ", ["x"]).highlights == []


def test_make_excerpt_finds_the_densest_cluster() -> None:
    filler = " ".join(["lorem ipsum dolor"] * 40)
    text = (
        "The ranking model is first mentioned here. "
        + filler
        + " Hybrid ranking fuses keyword ranking and vector ranking with reciprocal rank fusion. "
        + filler
    )
    excerpt = make_excerpt(text, ["ranking", "fusion"], max_chars=120)
    assert "Hybrid ranking fuses keyword ranking" in excerpt.text
    assert "fusion" in excerpt.text
    assert excerpt.text.startswith("...") and excerpt.text.endswith("...")
    pieces = [excerpt.text[h.begin : h.end].lower() for h in excerpt.highlights]
    assert pieces.count("ranking") == 3 and "fusion" in pieces
    assert len(excerpt.text) <= 120 + 6
    assert_excerpt_well_formed(text, ["ranking", "fusion"], 120)


def test_make_excerpt_prefers_more_distinct_terms() -> None:
    text = (
        "alpha alpha alpha alpha filler " * 3
        + "words " * 60
        + "alpha beta together here "
        + "words " * 60
    )
    excerpt = make_excerpt(text, ["alpha", "beta"], max_chars=40)
    assert "alpha beta" in excerpt.text


def test_make_excerpt_without_match_starts_at_the_text_start() -> None:
    text = "First words of the document go here and then many more words follow " * 10
    excerpt = make_excerpt(text, ["absent"], max_chars=50)
    assert excerpt.text.startswith("First words of the document")
    assert excerpt.text.endswith("...")
    assert not excerpt.text.startswith("...")
    assert excerpt.highlights == []
    assert len(excerpt.text) <= 53


def test_make_excerpt_at_the_end_of_the_text() -> None:
    text = "padding words " * 50 + "the final answer is here"
    excerpt = make_excerpt(text, ["answer"], max_chars=60)
    assert excerpt.text.startswith("...")
    assert excerpt.text.endswith("the final answer is here")
    assert_excerpt_well_formed(text, ["answer"], 60)


def test_make_excerpt_highlights_point_at_terms() -> None:
    text = "Padding. " * 30 + "Set the Index_Name with os.path.join(base, Name). " + "Tail. " * 30
    excerpt = make_excerpt(text, ["os.path.join", "name"], max_chars=80)
    pieces = [excerpt.text[h.begin : h.end] for h in excerpt.highlights]
    assert pieces == ["os.path.join", "Name"]


def test_make_excerpt_validates_max_chars() -> None:
    with pytest.raises(ValidationFailed):
        make_excerpt("text", ["text"], max_chars=0)


def test_make_excerpt_is_well_formed_on_random_texts() -> None:
    rng = random.Random(99)
    for _ in range(200):
        text = random_text(rng, rng.randint(0, 200))
        terms = rng.sample(["search", "index", "Query", "ranking", "passage", "os.path", "zzz"], 2)
        assert_excerpt_well_formed(text, terms, rng.choice([20, 60, 150, 300]))


# ----------------------------------------------------------------- answers


PASSAGE = (
    "Trellis is a search platform for documents. "
    "However, query suggestions are learned from the query log over 180 days. "
    "The query log is bounded in memory and old queries are dropped first. "
    "Search results are ranked by hybrid fusion."
)


def test_best_sentence_prefers_sentences_with_rarer_terms() -> None:
    answer = best_sentence(PASSAGE, ["query", "suggestions"])
    assert answer is not None
    assert answer.text == (
        "However, query suggestions are learned from the query log over 180 days."
    )
    assert answer.score > 0


def test_best_sentence_highlight_skips_leading_discourse_words() -> None:
    answer = best_sentence(PASSAGE, ["suggestions"])
    assert answer is not None
    assert len(answer.highlights) == 1
    span = answer.highlights[0]
    assert answer.text[span.begin : span.end] == (
        "query suggestions are learned from the query log over 180 days."
    )


def test_best_sentence_highlight_is_the_whole_sentence_without_discourse_words() -> None:
    answer = best_sentence(PASSAGE, ["hybrid", "fusion"])
    assert answer is not None
    assert answer.text == "Search results are ranked by hybrid fusion."
    assert answer.highlights == [Span(0, len(answer.text))]


def test_best_sentence_rewards_proximity() -> None:
    passage = (
        "The vector index is fast and it is backed by a store that holds the search data well. "
        "The vector search is fast and it is backed by an index that holds every data point well."
    )
    answer = best_sentence(passage, ["vector", "search"])
    assert answer is not None
    assert answer.text.startswith("The vector search is fast")


def test_best_sentence_penalises_very_short_sentences() -> None:
    passage = (
        "Fusion matters. "
        "Reciprocal rank fusion combines the keyword and vector result lists into one ranking."
    )
    answer = best_sentence(passage, ["fusion"])
    assert answer is not None
    assert answer.text.startswith("Reciprocal rank fusion")


def test_best_sentence_pairs_two_short_sentences() -> None:
    passage = (
        "Is freshness supported? Yes, it is. "
        "Other settings of the index are described in the administration guide for operators."
    )
    answer = best_sentence(passage, ["freshness", "supported"])
    assert answer is not None
    assert answer.text == "Is freshness supported? Yes, it is."


def test_best_sentence_penalises_very_long_sentences() -> None:
    long = "The ranking " + " ".join(["word"] * 120) + " ends here."
    passage = long + " Ranking uses fused keyword and vector scores for each result."
    answer = best_sentence(passage, ["ranking"])
    assert answer is not None
    assert answer.text.startswith("Ranking uses fused")


def test_best_sentence_none_without_match() -> None:
    assert best_sentence(PASSAGE, ["nonexistent"]) is None
    assert best_sentence(PASSAGE, []) is None
    assert best_sentence("", ["query"]) is None


def test_best_sentence_collapses_whitespace() -> None:
    answer = best_sentence("The answer\n  spans lines and has many words here.", ["answer"])
    assert answer is not None
    assert answer.text == "The answer spans lines and has many words here."
    assert not re.search(r"\s{2,}", answer.text)
