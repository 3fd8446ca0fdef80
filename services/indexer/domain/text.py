"""Text handling for search: sentences, passages, query terms, highlights, excerpts, answers."""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from runtime.errors import ValidationFailed


@dataclass(frozen=True)
class Span:
    begin: int
    end: int


@dataclass(frozen=True)
class Passage:
    text: str
    begin: int
    end: int
    tokens: int


@dataclass(frozen=True)
class Excerpt:
    text: str
    highlights: list[Span]


@dataclass(frozen=True)
class Answer:
    text: str
    highlights: list[Span]
    score: float


TokenCounter = Callable[[str], int]

ELLIPSIS = "..."

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\S+")
_QUERY_TOKEN = re.compile(r"\w+(?:\.\w+)+|\w+")


def estimate_tokens(text: str) -> int:
    """Approximate WordPiece count: words and punctuation marks, long words as two pieces."""
    total = 0
    for match in _TOKEN.finditer(text):
        piece = match.group()
        total += 2 if len(piece) > 8 else 1
    return total


# ---------------------------------------------------------------- sentences

_ABBREVIATIONS = frozenset(
    {
        "e.g", "i.e", "etc", "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "cf",
        "al", "approx", "inc", "ltd", "corp", "dept", "misc", "resp", "jan", "feb", "mar",
        "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    }
)  # fmt: skip
# Also plain words ("no", "sec"), so abbreviations only when a number follows: "No. 5", "p. 12".
_NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "vol", "fig", "figs", "ch", "sec", "p", "pp"})
_NUMBER_AHEAD = re.compile(r"\s*\d")
_TERMINAL = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s+[\"'\u201c\u2018(\[]*[A-Z0-9]|\s*\Z)")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_LIST_ITEM = re.compile(r"[^\S\n]*(?:[-*+\u2022\u2023\u25e6\u25aa\u2013]|\d{1,3}[.)]|[a-z][.)])\s")
_ATX_HEADING = re.compile(r"[^\S\n]*#{1,6}\s")
_UNDERLINE = re.compile(r"[^\S\n]*(?:=+|-{2,})[^\S\n]*")
_LINE_END_PUNCT = ".,;:!?-\u2013\u2014"


def _is_abbreviation(text: str, period: int) -> bool:
    start = period
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "._"):
        start -= 1
    token = text[start:period].strip(".").lower()
    if not token:
        return False
    if token in _NUMBER_ABBREVIATIONS:
        return _NUMBER_AHEAD.match(text, period + 1) is not None
    # Initialisms such as "e.g", "i.e" or "u.s" are dot-separated single letters.
    return token in _ABBREVIATIONS or re.fullmatch(r"(?:[a-z]\.)+[a-z]", token) is not None


def _line_cuts(text: str) -> list[int]:
    """Cut positions at newlines that end headings or list items."""
    lines: list[tuple[int, int]] = []
    pos = 0
    for raw in text.split("\n"):
        lines.append((pos, pos + len(raw)))
        pos += len(raw) + 1
    cuts: list[int] = []

    def content(i: int) -> str:
        return text[lines[i][0] : lines[i][1]].rstrip("\r")

    def blank(i: int) -> bool:
        return not content(i).strip()

    def list_item(i: int) -> bool:
        return _LIST_ITEM.match(content(i)) is not None

    def underline(i: int) -> bool:
        return _UNDERLINE.fullmatch(content(i)) is not None

    previous_cut = True
    for i in range(len(lines) - 1):
        line, following = content(i), content(i + 1)
        if blank(i):
            previous_cut = True
            continue
        if blank(i + 1):
            previous_cut = True
            continue
        next_is_underline = underline(i + 1) and not list_item(i + 1)
        stripped = line.strip()
        heading = _ATX_HEADING.match(line) is not None or (underline(i) and not list_item(i))
        if not heading and previous_cut and not next_is_underline:
            # A short unpunctuated title line followed by a capitalised line.
            words = stripped.split()
            head = following.lstrip()[:1]
            heading = (
                len(words) <= 8
                and stripped[-1] not in _LINE_END_PUNCT
                and (stripped[0].isupper() or stripped[0].isdigit())
                and (head.isupper() or head.isdigit())
            )
        continuation = following[:1].isspace() and not list_item(i + 1)
        cut = (
            (heading and not next_is_underline)
            or (list_item(i) and not continuation)
            or list_item(i + 1)
            or _ATX_HEADING.match(following) is not None
        )
        if cut:
            cuts.append(lines[i][1])
        previous_cut = cut
    return cuts


def split_sentences(text: str) -> list[Span]:
    """Sentence spans (whitespace trimmed) covering every non-whitespace character of text."""
    cuts: set[int] = set(_line_cuts(text))
    cuts.update(m.start() for m in _BLANK_LINE.finditer(text))
    for match in _TERMINAL.finditer(text):
        marks = match.group()
        if marks.rstrip("\"'\u201d\u2019)]") == "." and _is_abbreviation(text, match.start()):
            continue
        cuts.add(match.end())
    spans: list[Span] = []
    start = 0
    for cut in [*sorted(cuts), len(text)]:
        if cut < start:
            continue
        span = _trim(text, start, cut)
        if span is not None:
            spans.append(span)
        start = cut
    return spans


def _trim(text: str, begin: int, end: int) -> Span | None:
    while begin < end and text[begin].isspace():
        begin += 1
    while end > begin and text[end - 1].isspace():
        end -= 1
    return Span(begin, end) if begin < end else None


# ----------------------------------------------------------------- passages


@dataclass(frozen=True)
class _Unit:
    begin: int
    end: int
    tokens: int
    whole_sentence: bool


def _split_long(text: str, span: Span, max_tokens: int, count: TokenCounter) -> list[_Unit]:
    """Pieces of an over-long sentence, cut on word boundaries (inside a word only if it alone is too long)."""
    words: list[tuple[int, int, int]] = []
    for match in _WORD.finditer(text, span.begin, span.end):
        begin, end = match.span()
        tokens = count(text[begin:end])
        if tokens <= max_tokens:
            words.append((begin, end, tokens))
            continue
        while begin < end:
            # Binary search for the longest head of the word that still fits.
            low, high = begin + 1, end
            while low < high:
                middle = (low + high + 1) // 2
                if count(text[begin:middle]) <= max_tokens:
                    low = middle
                else:
                    high = middle - 1
            words.append((begin, low, count(text[begin:low])))
            begin = low
    pieces: list[_Unit] = []
    begin, end, total = words[0]
    for w_begin, w_end, w_tokens in words[1:]:
        if total + w_tokens <= max_tokens:
            end, total = w_end, total + w_tokens
        else:
            pieces.append(_Unit(begin, end, total, False))
            begin, end, total = w_begin, w_end, w_tokens
    pieces.append(_Unit(begin, end, total, False))
    return pieces


def chunk_passages(
    text: str,
    *,
    max_tokens: int = 200,
    overlap_sentences: int = 1,
    count: TokenCounter = estimate_tokens,
) -> list[Passage]:
    """Greedy packing of whole sentences into passages of at most max_tokens, with sentence overlap."""
    if max_tokens < 1:
        raise ValidationFailed("max_tokens must be at least 1")
    if overlap_sentences < 0:
        raise ValidationFailed("overlap_sentences must not be negative")
    units: list[_Unit] = []
    for span in split_sentences(text):
        tokens = count(text[span.begin : span.end])
        if tokens <= max_tokens:
            units.append(_Unit(span.begin, span.end, tokens, True))
        else:
            units.extend(_split_long(text, span, max_tokens, count))

    passages: list[Passage] = []
    start = 0
    while start < len(units):
        stop, total = start + 1, units[start].tokens
        while stop < len(units) and total + units[stop].tokens <= max_tokens:
            total += units[stop].tokens
            stop += 1
        begin, end = units[start].begin, units[stop - 1].end
        passages.append(Passage(text[begin:end], begin, end, total))
        if stop == len(units):
            break
        start = _next_start(units, start, stop, overlap_sentences, max_tokens)
    return passages


def _next_start(
    units: Sequence[_Unit], start: int, stop: int, overlap: int, max_tokens: int
) -> int:
    # Overlap only whole sentences, and only as many as still leave room for a new unit.
    for shared in range(min(overlap, stop - start - 1), 0, -1):
        first = stop - shared
        carried = units[first:stop]
        if not all(u.whole_sentence for u in carried):
            continue
        if sum(u.tokens for u in carried) + units[stop].tokens <= max_tokens:
            return first
    return stop


# -------------------------------------------------------------- query terms

STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves also may might must
    shall us via per yet let lets whats hows
    """.split()
)


def query_terms(query: str) -> list[str]:
    """Distinct lowercased terms in query order; dotted identifiers are kept whole and as parts."""
    terms: list[str] = []
    seen: set[str] = set()
    for match in _QUERY_TOKEN.finditer(query.lower()):
        token = match.group()
        candidates = [token, *token.split(".")] if "." in token else [token]
        for term in candidates:
            if term and term not in seen:
                seen.add(term)
                terms.append(term)
    content = [t for t in terms if t not in STOPWORDS]
    return content if content else terms


def _normalise_terms(terms: Sequence[str]) -> list[str]:
    out: list[str] = []
    for term in terms:
        norm = " ".join(term.lower().split())
        if norm and norm not in out:
            out.append(norm)
    return out


# --------------------------------------------------------------- highlights


def _variants(term: str) -> list[str]:
    escaped = r"\s+".join(re.escape(part) for part in term.split())
    forms = [escaped + "(?:s|es|ed|ing)?"]
    if len(term) > 2 and term.endswith("e"):
        forms.append(escaped[:-1] + "(?:ed|ing)")
    if len(term) > 2 and term.endswith("y") and term[-2] not in "aeiou":
        forms.append(escaped[:-1] + "(?:ies|ied)")
    return forms


@lru_cache(maxsize=512)
def _term_pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    if not terms:
        return None
    # Longest terms first so "os.path" wins over "os" at the same position.
    ordered = sorted(terms, key=len, reverse=True)
    alternatives = [form for term in ordered for form in _variants(term)]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _matches(text: str, terms: Sequence[str]) -> list[Span]:
    pattern = _term_pattern(tuple(terms))
    if pattern is None:
        return []
    return [Span(m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()]


def _merge(spans: Sequence[Span]) -> list[Span]:
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.begin, s.end)):
        if merged and span.begin <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Span(last.begin, max(last.end, span.end))
        else:
            merged.append(span)
    return merged


def highlight_terms(text: str, terms: Sequence[str]) -> list[Span]:
    """Case-insensitive whole-word matches of the terms (and -s/-es/-ed/-ing forms), merged and sorted."""
    return _merge(_matches(text, _normalise_terms(terms)))


# ----------------------------------------------------------------- excerpts


def _window(spans: Sequence[tuple[Span, int]], max_chars: int) -> tuple[int, int]:
    """Begin and end of the densest cluster of matches that fits in max_chars."""
    best: tuple[int, int, int] | None = None
    best_range = (0, 0)
    j = 0
    for i, (first, _) in enumerate(spans):
        j = max(j, i)
        while j + 1 < len(spans) and spans[j + 1][0].end - first.begin <= max_chars:
            j += 1
        window = spans[i : j + 1]
        score = (len({t for _, t in window}), len(window), -first.begin)
        if best is None or score > best:
            best = score
            best_range = (first.begin, max(s.end for s, _ in window))
    return best_range


def make_excerpt(text: str, terms: Sequence[str], *, max_chars: int = 300) -> Excerpt:
    """About max_chars of text around the densest cluster of term matches, cut on word boundaries."""
    if max_chars < 1:
        raise ValidationFailed("max_chars must be at least 1")
    norm_terms = _normalise_terms(terms)
    whole = _trim(text, 0, len(text))
    if whole is None:
        return Excerpt("", [])
    if whole.end - whole.begin <= max_chars:
        body = " ".join(text[whole.begin : whole.end].split())
        return Excerpt(body, highlight_terms(body, norm_terms))

    tagged = sorted(
        ((span, index) for index, term in enumerate(norm_terms) for span in _matches(text, [term])),
        key=lambda st: (st[0].begin, st[0].end),
    )
    if tagged:
        cluster_begin, cluster_end = _window(tagged, max_chars)
        slack = max_chars - (cluster_end - cluster_begin)
        start = max(whole.begin, cluster_begin - slack // 2)
        if start + max_chars > whole.end:
            start = max(whole.begin, whole.end - max_chars)
    else:
        cluster_begin = cluster_end = start = whole.begin
    start = _snap_start(text, start, cluster_begin)
    end = min(whole.end, start + max_chars)
    end = _snap_end(text, start, end, cluster_end)
    span = _trim(text, start, end) or Span(start, end)
    body = " ".join(text[span.begin : span.end].split())
    prefix = ELLIPSIS if span.begin > whole.begin else ""
    suffix = ELLIPSIS if span.end < whole.end else ""
    shift = len(prefix)
    highlights = [Span(h.begin + shift, h.end + shift) for h in highlight_terms(body, norm_terms)]
    return Excerpt(prefix + body + suffix, highlights)


def _snap_start(text: str, start: int, limit: int) -> int:
    """Move start to a word start: forward if that stays before limit, else backward."""
    if start == 0 or text[start - 1].isspace():
        return start
    forward = start
    while forward < len(text) and not text[forward].isspace():
        forward += 1
    while forward < len(text) and text[forward].isspace():
        forward += 1
    if forward <= limit:
        return forward
    backward = start
    while backward > 0 and not text[backward - 1].isspace():
        backward -= 1
    return backward


def _snap_end(text: str, start: int, end: int, must_reach: int) -> int:
    """Move end back to a word end, keeping must_reach inside; a single giant word is cut hard."""
    if end >= len(text) or text[end].isspace() or text[end - 1].isspace():
        snapped = end
    else:
        snapped = end
        while snapped > start and not text[snapped - 1].isspace():
            snapped -= 1
        if snapped == start:
            return end
    if snapped < must_reach:
        snapped = must_reach
        while snapped < len(text) and not text[snapped].isspace():
            snapped += 1
    return snapped


# ------------------------------------------------------------------ answers

# Words that open a sentence without being part of the answer; the second group only with a comma.
_DISCOURSE = re.compile(
    r"(?:(?:however|moreover|furthermore|additionally|therefore|thus|hence|consequently|"
    r"also|and|but|so|basically|actually|indeed|besides|please\s+note\s+that|note\s+that|"
    r"in\s+addition|in\s+fact|as\s+a\s+result|for\s+example|for\s+instance|in\s+other\s+words|"
    r"of\s+course|that\s+said)\b,?|"
    r"(?:first|firstly|second|secondly|third|next|then|finally|lastly|now|well|yes|ok|okay|"
    r"overall|meanwhile|alternatively|otherwise|similarly|likewise|instead|still|in\s+short|"
    r"in\s+summary|to\s+summarize|in\s+general|generally)\b,)\s+",
    re.IGNORECASE,
)
_SHORT_SENTENCE_WORDS = 5
_LONG_SENTENCE_WORDS = 40
_PAIRABLE_WORDS = 8


def _answer_start(sentence: str) -> int:
    start = 0
    while True:
        match = _DISCOURSE.match(sentence, start)
        if match is None or match.end() >= len(sentence):
            return start
        start = match.end()


def _proximity(positions: Sequence[tuple[int, int]], distinct: int) -> int:
    """Smallest word window holding one occurrence of each matched term."""
    best = math.inf
    counts: dict[int, int] = {}
    left = 0
    for pos, term in positions:
        counts[term] = counts.get(term, 0) + 1
        while len(counts) == distinct:
            best = min(best, pos - positions[left][0] + 1)
            left_term = positions[left][1]
            counts[left_term] -= 1
            if counts[left_term] == 0:
                del counts[left_term]
            left += 1
    return int(best)


def _score(text: str, terms: Sequence[str], weights: Sequence[float]) -> float:
    words = [m.start() for m in _WORD.finditer(text)]
    positions: list[tuple[int, int]] = []
    base = 0.0
    matched = 0
    for index, term in enumerate(terms):
        spans = _matches(text, [term])
        if spans:
            matched += 1
            base += weights[index]
            positions.extend((bisect.bisect_right(words, s.begin) - 1, index) for s in spans)
    if matched == 0:
        return 0.0
    score = base
    if matched > 1:
        positions.sort()
        score += 0.3 * base * matched / _proximity(positions, matched)
    n_words = len(words)
    if n_words < _SHORT_SENTENCE_WORDS:
        score *= 0.6
    elif n_words > _LONG_SENTENCE_WORDS:
        score *= math.sqrt(_LONG_SENTENCE_WORDS / n_words)
    return score


def best_sentence(passage: str, terms: Sequence[str]) -> Answer | None:
    """The sentence (or two short ones) of the passage that best answers the terms; None if none match."""
    norm_terms = _normalise_terms(terms)
    sentences = [" ".join(passage[s.begin : s.end].split()) for s in split_sentences(passage)]
    if not norm_terms or not sentences:
        return None
    frequency = [sum(1 for s in sentences if _matches(s, [t])) for t in norm_terms]
    # Rarer terms in the passage carry more weight, like idf over its sentences.
    weights = [math.log(1.0 + len(sentences) / f) if f else 0.0 for f in frequency]
    if not any(frequency):
        return None

    candidates: list[str] = []
    for i, sentence in enumerate(sentences):
        candidates.append(sentence)
        if i + 1 < len(sentences):
            following = sentences[i + 1]
            if max(len(sentence.split()), len(following.split())) <= _PAIRABLE_WORDS:
                candidates.append(sentence + " " + following)
    best_text, best_score = "", 0.0
    for candidate in candidates:
        score = _score(candidate, norm_terms, weights)
        if score > best_score:
            best_text, best_score = candidate, score
    if not best_text:
        return None
    return Answer(best_text, [Span(_answer_start(best_text), len(best_text))], best_score)
