"""Turns fetched HTML, plain text, Markdown, JSON and CSV bodies into indexable text and metadata."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html import unescape
from html.entities import html5 as _ENTITIES
from typing import Final
from urllib.parse import urljoin, urlsplit

__all__ = [
    "MAX_CSV_ROWS",
    "ExtractedDocument",
    "Heading",
    "decode_bytes",
    "extract_csv",
    "extract_html",
    "extract_json",
    "extract_markdown",
    "extract_plain_text",
]

MAX_CSV_ROWS: Final = 100_000
_MAX_TITLE: Final = 200
_SNIFF_BYTES: Final = 2048
# Browsers stop nesting at a similar depth; the cap also bounds the stack scans for implied end tags.
_MAX_DEPTH: Final = 512


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class ExtractedDocument:
    title: str
    text: str
    headings: list[Heading] = field(default_factory=list)
    language: str | None = None
    canonical_url: str | None = None
    links: list[str] = field(default_factory=list)
    description: str | None = None
    last_modified: str | None = None
    robots_noindex: bool = False
    robots_nofollow: bool = False


# --- character sets -------------------------------------------------------------------------

_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# WHATWG Encoding maps these labels to the superset that browsers actually decode with.
_SUPERSETS: Final = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
}
_META_CHARSET: Final = re.compile(
    rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)
_XML_ENCODING: Final = re.compile(
    rb"""^\s*<\?xml\b[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").strip().lower()
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
        b"a".decode(name)  # rejects bytes-to-bytes codecs such as "base64"
    except (LookupError, ValueError):
        return None
    return _SUPERSETS.get(name, name)


def _bom_codec(data: bytes) -> str | None:
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    return None


def _sniffed_codec(data: bytes) -> str | None:
    head = data[:_SNIFF_BYTES]
    match = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    if match is None:
        return None
    name = _codec(match.group(1).decode("ascii"))
    # A charset found by byte sniffing implies an ASCII-compatible encoding (WHATWG).
    if name is not None and name.startswith(("utf-16", "utf-32")):
        return "utf-8"
    return name


def _decode(data: bytes, codec: str) -> str:
    try:
        text = data.decode(codec, errors="replace")
    except (LookupError, ValueError):  # codecs such as "idna" refuse errors="replace"
        text = data.decode("utf-8", errors="replace")
    return text[1:] if text.startswith("\ufeff") else text


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode an HTML body: the given charset, else a BOM, else a <meta> charset, else UTF-8."""
    codec = _codec(charset) or _bom_codec(data) or _sniffed_codec(data) or "utf-8"
    return _decode(data, codec)


def _decode_text(data: bytes, charset: str | None = None) -> str:
    codec = _codec(charset) or _bom_codec(data) or "utf-8"
    return _decode(data, codec).replace("\r\n", "\n").replace("\r", "\n")


# --- shared helpers -------------------------------------------------------------------------


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _language(value: str | None) -> str | None:
    if not value:
        return None
    first = value.split(",")[0].strip()
    primary = re.split(r"[-_]", first, maxsplit=1)[0].lower()
    return primary if primary.isascii() and primary.isalpha() and len(primary) <= 8 else None


def _absolute(href: str, base: str) -> str | None:
    """An absolute http(s) URL without fragment, or None for same-page and non-web targets."""
    href = href.strip(" \t\n\r\f")
    if "\t" in href or "\n" in href or "\r" in href:
        href = href.replace("\t", "").replace("\n", "").replace("\r", "")
    # The fragment never changes which document a reference resolves to.
    href = href.split("#", 1)[0].replace(" ", "%20")
    if not href:
        return None
    try:
        url = href if href.startswith(("http://", "https://")) else urljoin(base, href)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def _unique_links(hrefs: Iterable[str], base: str) -> list[str]:
    links: dict[str, None] = {}
    for href in dict.fromkeys(hrefs):
        url = _absolute(href, base)
        if url is not None:
            links.setdefault(url, None)
    return list(links)


# --- HTML -------------------------------------------------------------------------------------

_VOID: Final = frozenset(
    {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link", "meta",
        "param", "source", "track", "wbr",
    }
)  # fmt: skip
_DROP_TAGS: Final = frozenset(
    {
        "script", "style", "noscript", "template", "svg", "iframe", "form", "button", "nav",
        "header", "footer", "aside", "select", "textarea", "object", "canvas",
    }
)  # fmt: skip
_DROP_ROLES: Final = frozenset({"navigation", "banner", "contentinfo", "complementary", "search"})
_DROP_NAMES: Final = frozenset(
    {
        "nav", "navbar", "navigation", "menu", "sidebar", "sphinxsidebar", "related", "footer",
        "header", "breadcrumb", "breadcrumbs", "cookie", "banner", "skip", "toc",
    }
)  # fmt: skip
_DROP_CLASSES: Final = _DROP_NAMES | {"headerlink"}
_DROP_CLASS_PREFIXES: Final = ("sphinxsidebar",)

_HEADINGS: Final = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_KIND: Final = {
    **dict.fromkeys(
        (
            "address", "article", "aside", "blockquote", "caption", "center", "dd", "details",
            "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer",
            "form", "header", "hgroup", "legend", "main", "menu", "nav", "ol", "p", "section",
            "summary", "table", "tbody", "tfoot", "thead", "ul",
        ),
        "p",
    ),
    **dict.fromkeys(_HEADINGS, "h"),
    "li": "li",
    "tr": "row",
    "pre": "pre",
}  # fmt: skip
_TIGHT: Final = frozenset({"li", "row"})
_CELLS: Final = frozenset({"td", "th"})
# A start tag of one of these closes an open <p> (HTML "close a p element").
_CLOSES_P: Final = frozenset(
    {
        "address", "article", "aside", "blockquote", "details", "dialog", "div", "dl", "dd", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "li",
        "main", "menu", "nav", "ol", "p", "pre", "section", "table", "ul", *_HEADINGS,
    }
)  # fmt: skip
_P_SCOPE: Final = frozenset(
    {"applet", "button", "caption", "marquee", "object", "table", "td", "template", "th"}
)
_P_TARGETS: Final = frozenset({"p"})
_HEADING_TAGS: Final = frozenset(_HEADINGS)
# Start tag -> (open elements it implicitly closes, elements that stop the search for them).
_IMPLIED: Final = {
    "li": (frozenset({"li"}), frozenset({"ol", "ul", "menu", "table", "td", "th"})),
    "dt": (frozenset({"dt", "dd"}), frozenset({"dl", "table", "td", "th"})),
    "dd": (frozenset({"dt", "dd"}), frozenset({"dl", "table", "td", "th"})),
    "tr": (frozenset({"tr"}), frozenset({"table", "thead", "tbody", "tfoot"})),
    "td": (_CELLS, frozenset({"tr", "table"})),
    "th": (_CELLS, frozenset({"tr", "table"})),
    "a": (frozenset({"a"}), frozenset({"table", "td", "th", "button"})),
    **dict.fromkeys(_HEADINGS, (_HEADING_TAGS, frozenset())),
}

# Flags of an open element.
_DROP: Final = 1
_BLOCK: Final = 2
_PRE: Final = 4
_MAIN: Final = 8
_ARTICLE: Final = 16
_SECTION: Final = 32  # main, article or section: a <header> in it is content
_HEADING: Final = 64
_CELL: Final = 128
_NESTED: Final = 256  # article or section: an <aside> in it is content
_COUNTED: Final = _DROP | _MAIN | _ARTICLE | _SECTION | _NESTED

# Stands for <br> inside buffered text until whitespace is collapsed.
_BR: Final = "\ue000"

# One token of markup at a "<". Every alternative except a comment needs a later ">", so the
# tokenizer only searches up to the last ">" and no search runs past it (no quadratic rescans).
_MARKUP: Final = re.compile(
    r"<(?:"
    r"([A-Za-z][^\s/>\x00]*+)((?:[^>\"'=]++|=\s*+(?:\"[^\"]*+\"|'[^']*+'|[^\s>]*+)|[\"'])*+)>"
    r"|/([A-Za-z][^\s/>\x00]*+)[^>]*+>"
    r"|!--(?:-?>|.*?(?:--!?>|\Z))"
    r"|[!?/][^>]*+>"
    r")",
    re.DOTALL,
)
_ATTRIBUTE: Final = re.compile(
    r"([^\s\"'>/=][^\s\"'>/=]*)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]*)))?"
)
_ATTRIBUTE_REFERENCE: Final = re.compile(
    r"&(#[0-9]+;?|#[xX][0-9A-Fa-f]+;?|[A-Za-z][A-Za-z0-9]*;?)(=?)"
)
_UNTERMINATED: Final = re.compile(r"<[A-Za-z/!?]")
# Elements whose content is not markup; noscript as in a browser with scripting enabled.
_RAW_TEXT: Final = frozenset(
    {"script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes", "noscript"}
)
_RAW_TEXT_END: Final = {tag: re.compile(rf"</{tag}(?=[\s/>])", re.IGNORECASE) for tag in _RAW_TEXT}
_SECTIONING: Final = frozenset({"main", "article", "section"})
_DOCUMENT_TAGS: Final = frozenset({"html", "head", "body", "title"})
_IMPLIES_END: Final = _CLOSES_P | _IMPLIED.keys()
_NEEDS_ATTRIBUTES: Final = frozenset({"a", "html"})
_NO_ATTRIBUTES: Final[dict[str, str]] = {}


def _decode_reference(match: re.Match[str]) -> str:
    reference, equals = match.groups()
    # In attribute values a legacy reference without ";" stays literal before "=" or more
    # letters (HTML spec), which keeps query strings like "?a=1&copy=2" intact.
    if reference.startswith("#") or (
        reference in _ENTITIES and (reference.endswith(";") or not equals)
    ):
        return unescape("&" + reference) + equals
    return match.group(0)


def _attributes(raw: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for name, double, single, bare in _ATTRIBUTE.findall(raw):
        name = name.lower()
        if name not in attrs:
            value = double or single or bare
            if "&" in value:
                value = _ATTRIBUTE_REFERENCE.sub(_decode_reference, value)
            attrs[name] = value
    return attrs


def _is_boilerplate(attrs: dict[str, str]) -> bool:
    role = attrs.get("role")
    if role and not _DROP_ROLES.isdisjoint(role.lower().split()):
        return True
    classes = attrs.get("class")
    if classes:
        for token in classes.lower().split():
            if token in _DROP_CLASSES or token.startswith(_DROP_CLASS_PREFIXES):
                return True
    ident = attrs.get("id")
    if ident and ident.strip().lower() in _DROP_NAMES:
        return True
    if "hidden" in attrs:
        return True
    style = attrs.get("style")
    return style is not None and "display:none" in style.replace(" ", "").lower()


class _HtmlExtractor:
    """Tokenizes HTML with a stack of open elements, tolerating unclosed and stray tags."""

    def __init__(self) -> None:
        self.title: str | None = None
        self.language: str | None = None
        self.meta_language: str | None = None
        self.base_href: str | None = None
        self.canonical_href: str | None = None
        self.hrefs: list[str] = []
        self.description: str | None = None
        self.last_modified: str | None = None
        self.noindex = False
        self.nofollow = False
        # (text, kind, region flags) per paragraph-like block, in document order.
        self.blocks: list[tuple[str, str, int]] = []
        self.headings: list[tuple[Heading, int]] = []

        self._stack: list[tuple[str, int]] = []
        self._open: dict[str, int] = {}
        self._kinds: list[str] = []
        self._buf: list[str] = []
        self._drop = 0
        self._pre = 0
        self._main = 0
        self._article = 0
        self._section = 0
        self._nested = 0
        self._main_seen = False
        self._article_seen = False
        self._html_seen = False
        self._heading_level = 0
        self._heading_parts: list[str] = []
        # Pages repeat the same attribute text (class="pre") thousands of times.
        self._attribute_cache: dict[str, tuple[dict[str, str], bool]] = {}

    def feed(self, html: str) -> None:
        """Parse a whole document (call once)."""
        search = _MARKUP.search
        start_tag, end_tag, data = self._start, self._end, self._data
        size = len(html)
        searchable = html.rfind(">") + 1
        pos = 0
        while pos < size:
            match = search(html, pos, searchable)
            if match is None:
                # Browsers drop a tag that runs into the end of the document.
                cut = _UNTERMINATED.search(html, pos)
                data(html[pos : cut.start() if cut else size])
                break
            start = match.start()
            if start > pos:
                data(html[pos:start])
            pos = match.end()
            name, raw, closing = match.groups()
            if name is not None:
                tag = name.lower()
                start_tag(tag, raw)
                if raw.endswith("/"):
                    if tag not in _VOID:
                        end_tag(tag)
                elif tag in _RAW_TEXT:
                    pos = self._raw_text(html, tag, pos)
            elif closing is not None:
                end_tag(closing.lower())
            elif html.startswith("<!--", start) and not html.endswith(("-->", "--!>"), start, pos):
                break  # an unterminated comment runs to the end of the document
        while self._stack:
            self._pop()
        self._flush()

    def _raw_text(self, html: str, tag: str, pos: int) -> int:
        end = _RAW_TEXT_END[tag].search(html, pos)
        stop = end.start() if end else len(html)
        if tag == "title" and self.title is None and not self._drop:
            self.title = _collapse(unescape(html[pos:stop])) or None
        self._end(tag)
        if end is None:
            return len(html)
        gt = html.find(">", end.end())
        return len(html) if gt < 0 else gt + 1

    # --- tokens ---------------------------------------------------------------------------------

    def _start(self, tag: str, raw: str) -> None:
        if tag in _VOID:
            self._void(tag, raw)
            return
        if raw and (not self._drop or tag in _NEEDS_ATTRIBUTES):
            cached = self._attribute_cache.get(raw)
            if cached is None:
                attrs = _attributes(raw)
                cached = self._attribute_cache[raw] = (attrs, _is_boilerplate(attrs))
            attrs, boilerplate = cached
        else:
            attrs, boilerplate = _NO_ATTRIBUTES, False
        if tag == "a":
            href = attrs.get("href")
            if href and "nofollow" not in attrs.get("rel", "").lower().split():
                self.hrefs.append(href)
        elif tag in _DOCUMENT_TAGS:
            if tag == "html" and not self._html_seen:
                self._html_seen = True
                self.language = _language(attrs.get("lang") or attrs.get("xml:lang"))
            return
        if tag in _IMPLIES_END:
            self._implied_end_tags(tag)
        if len(self._stack) >= _MAX_DEPTH:
            return

        flags = 0
        if self._drop:
            flags = _DROP
        elif boilerplate or (tag in _DROP_TAGS and not self._is_nested_landmark(tag)):
            flags = _DROP
            if self._buf:
                self._buf.append(" ")
        elif tag in _SECTIONING or "role" in attrs:
            is_main = tag == "main" or "main" in attrs.get("role", "").lower().split()
            if is_main and not self._main_seen:
                self._main_seen = True
                flags = _MAIN
            elif tag == "article" and not self._article_seen:
                self._article_seen = True
                flags = _ARTICLE
            if is_main or tag in _SECTIONING:
                flags |= _SECTION
            if tag == "article" or tag == "section":
                flags |= _NESTED

        kind = _BLOCK_KIND.get(tag)
        if kind is not None:
            if not self._pre:
                self._flush()
            self._kinds.append(kind)
            flags |= _BLOCK
            if kind == "pre":
                flags |= _PRE
                self._pre += 1
            elif kind == "h" and not flags & _DROP:
                flags |= _HEADING
                self._heading_level = _HEADINGS[tag]
                self._heading_parts = []
        elif tag in _CELLS:
            flags |= _CELL
            self._buf.append(" ")

        self._stack.append((tag, flags))
        self._open[tag] = self._open.get(tag, 0) + 1
        if flags & _COUNTED:
            if flags & _DROP:
                self._drop += 1
            if flags & _MAIN:
                self._main += 1
            if flags & _ARTICLE:
                self._article += 1
            if flags & _SECTION:
                self._section += 1
            if flags & _NESTED:
                self._nested += 1

    def _is_nested_landmark(self, tag: str) -> bool:
        # HTML-AAM: <header> is a banner and <aside> complementary only outside sectioning
        # content, so an article's own header (its h1) and Sphinx footnotes/topics are content.
        if tag == "header":
            return self._section > 0
        return tag == "aside" and self._nested > 0

    def _end(self, tag: str) -> None:
        if self._open.get(tag):
            while self._stack:
                if self._pop() == tag:
                    break
        elif tag == "br":
            self._void("br", "")
        elif tag == "p" and not self._pre:
            # A stray </p> still renders as an (empty) paragraph, i.e. a break.
            self._flush()

    def _data(self, text: str) -> None:
        if self._drop:
            return
        if "&" in text:
            text = unescape(text)
        if _BR in text:
            text = text.replace(_BR, "")
        self._buf.append(text)
        if self._heading_level:
            self._heading_parts.append(text)

    # --- elements -------------------------------------------------------------------------------

    def _void(self, tag: str, raw: str) -> None:
        if tag == "br":
            if not self._drop:
                self._buf.append("\n" if self._pre else _BR)
                if self._heading_level:
                    self._heading_parts.append(" ")
        elif tag == "hr":
            if not self._pre:
                self._implied_end_tags("hr")
                self._flush()
        elif tag == "meta":
            self._meta(_attributes(raw))
        elif tag == "link":
            attrs = _attributes(raw)
            href = attrs.get("href")
            if href and self.canonical_href is None:
                if "canonical" in attrs.get("rel", "").lower().split():
                    self.canonical_href = href
        elif tag == "base" and self.base_href is None:
            href = _attributes(raw).get("href")
            if href and href.strip():
                self.base_href = href

    def _meta(self, attrs: dict[str, str]) -> None:
        content = attrs.get("content", "").strip()
        if not content:
            return
        name = attrs.get("name", "").strip().lower()
        equiv = attrs.get("http-equiv", "").strip().lower()
        prop = attrs.get("property", "").strip().lower()
        if name == "description" and self.description is None:
            self.description = _collapse(content)
        elif name == "robots":
            directives = set(re.split(r"[\s,]+", content.lower()))
            self.noindex |= bool(directives & {"noindex", "none"})
            self.nofollow |= bool(directives & {"nofollow", "none"})
        elif equiv == "content-language" and self.meta_language is None:
            self.meta_language = _language(content)
        if self.last_modified is None and (
            equiv == "last-modified" or name == "last-modified" or prop == "article:modified_time"
        ):
            self.last_modified = content

    def _implied_end_tags(self, tag: str) -> None:
        if tag in _CLOSES_P and self._open.get("p"):
            self._close_within(_P_TARGETS, _P_SCOPE)
        implied = _IMPLIED.get(tag)
        if implied is not None:
            targets, scope = implied
            for target in targets:
                if self._open.get(target):
                    self._close_within(targets, scope)
                    break

    def _close_within(self, targets: frozenset[str], scope: frozenset[str]) -> None:
        for index in range(len(self._stack) - 1, -1, -1):
            tag = self._stack[index][0]
            if tag in targets:
                while len(self._stack) > index:
                    self._pop()
                return
            if tag in scope:
                return

    def _pop(self) -> str:
        tag, flags = self._stack[-1]
        if flags:
            if flags & _BLOCK:
                if flags & _PRE or not self._pre:
                    self._flush()
                self._kinds.pop()
            elif flags & _CELL:
                self._buf.append(" ")
            if flags & _HEADING:
                self._end_heading()
            if flags & _PRE:
                self._pre -= 1
            if flags & _COUNTED:
                if flags & _DROP:
                    self._drop -= 1
                if flags & _MAIN:
                    self._main -= 1
                if flags & _ARTICLE:
                    self._article -= 1
                if flags & _SECTION:
                    self._section -= 1
                if flags & _NESTED:
                    self._nested -= 1
        self._stack.pop()
        self._open[tag] -= 1
        return tag

    def _region(self) -> int:
        return (_MAIN if self._main else 0) | (_ARTICLE if self._article else 0)

    def _end_heading(self) -> None:
        text = _collapse("".join(self._heading_parts).replace(_BR, " "))
        if text:
            self.headings.append((Heading(self._heading_level, text), self._region()))
        self._heading_level = 0
        self._heading_parts = []

    def _flush(self) -> None:
        if not self._buf:
            return
        raw = "".join(self._buf)
        self._buf.clear()
        if self._pre:
            text = raw.replace(_BR, "\n").strip("\n").rstrip()
        else:
            lines = (_collapse(line) for line in raw.split(_BR))
            text = "\n".join(line for line in lines if line)
        if text:
            kind = self._kinds[-1] if self._kinds else "p"
            self.blocks.append((text, kind, self._region()))


def _join_blocks(blocks: list[tuple[str, str, int]]) -> str:
    parts: list[str] = []
    previous = ""
    for text, kind, _ in blocks:
        if parts:
            parts.append("\n" if kind in _TIGHT and previous in _TIGHT else "\n\n")
        parts.append(text)
        previous = kind
    return "".join(parts)


def extract_html(html: str | bytes, base_url: str) -> ExtractedDocument:
    """Main text and metadata of an HTML page; links come from the whole page."""
    if isinstance(html, bytes):
        html = decode_bytes(html, None)
    html = html.replace("\r\n", "\n").replace("\r", "\n")
    parser = _HtmlExtractor()
    parser.feed(html)

    # Prefer <main>/role=main, then the first <article>, then the whole page without boilerplate.
    blocks = parser.blocks
    headings = parser.headings
    for region in (_MAIN, _ARTICLE):
        chosen = [block for block in parser.blocks if block[2] & region]
        if chosen:
            blocks = chosen
            headings = [h for h in parser.headings if h[1] & region]
            break

    title = parser.title or ""
    if not title:
        first_h1 = (h.text for h, _ in (*headings, *parser.headings) if h.level == 1)
        title = next(first_h1, "")

    base = base_url
    if parser.base_href is not None:
        resolved = _absolute(parser.base_href, base_url)
        if resolved is not None:
            base = resolved
    canonical = None
    if parser.canonical_href is not None:
        canonical = _absolute(parser.canonical_href, base)

    return ExtractedDocument(
        title=title,
        text=_join_blocks(blocks),
        headings=[h for h, _ in headings],
        language=parser.language or parser.meta_language,
        canonical_url=canonical,
        links=_unique_links(parser.hrefs, base),
        description=parser.description,
        last_modified=parser.last_modified,
        robots_noindex=parser.noindex,
        robots_nofollow=parser.nofollow,
    )


# --- plain text -------------------------------------------------------------------------------


def _tidy_lines(lines: Iterable[str]) -> str:
    """Right-strip lines, fold runs of blank lines into one, trim blank lines at both ends."""
    out: list[str] = []
    blank = False
    for line in lines:
        line = line.rstrip()
        if not line:
            blank = bool(out)
            continue
        if blank:
            out.append("")
            blank = False
        out.append(line)
    return "\n".join(out)


def _first_line(text: str) -> str:
    for line in text.split("\n"):
        line = _collapse(line)
        if line:
            return line[:_MAX_TITLE]
    return ""


def extract_plain_text(data: bytes, *, charset: str | None = None) -> ExtractedDocument:
    """A text/plain body; the first non-empty line doubles as the title."""
    text = _decode_text(data, charset).replace("\x00", "")
    return ExtractedDocument(title=_first_line(text), text=_tidy_lines(text.split("\n")))


# --- Markdown ---------------------------------------------------------------------------------

_MD_FENCE: Final = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_MD_ATX: Final = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_MD_ATX_CLOSE: Final = re.compile(r"(?:^|[ \t]+)#+$")
_MD_SETEXT: Final = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_MD_RULE: Final = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_MD_TABLE_RULE: Final = re.compile(r"^\s*\|?(?:\s*:?-+:?\s*\|)+\s*(?::?-+:?\s*)?$")
_MD_REFERENCE: Final = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?")
_MD_QUOTE: Final = re.compile(r"^ {0,3}(?:>[ \t]?)+")
_MD_BULLET: Final = re.compile(r"^[-*+][ \t]+(?:\[[ xX]\][ \t]+)?")
_MD_TASK: Final = re.compile(r"^(\d{1,9}[.)][ \t]+)\[[ xX]\][ \t]+")
_MD_ESCAPE: Final = re.compile(r"\\([!-/:-@\[-`{-~])")
_MD_CODE: Final = re.compile(r"(`+)(.{1,2000}?)(?<!`)\1(?!`)")
_MD_TEXT: Final = r"\[((?:[^\[\]]|\[[^\[\]]*\])*+)\]"
_MD_DEST: Final = (
    r"\(\s*(<[^<>\n]*>|(?:[^()\s]|\([^()\s]*\))*+)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"
)
_MD_IMAGE: Final = re.compile("!" + _MD_TEXT + _MD_DEST)
_MD_LINK: Final = re.compile(_MD_TEXT + _MD_DEST)
_MD_REF_LINK: Final = re.compile(_MD_TEXT + r"\[[^\[\]]*\]")
_MD_AUTOLINK: Final = re.compile(r"<((?:https?|ftp|mailto):[^<>\s]+)>", re.IGNORECASE)
_MD_EMPHASIS: Final = (
    ("**", re.compile(r"\*\*(?=\S)(.{1,500}?)(?<=\S)\*\*")),
    ("__", re.compile(r"(?<!\w)__(?=\S)(.{1,500}?)(?<=\S)__(?!\w)")),
    ("*", re.compile(r"\*(?=[^\s*])(.{1,500}?)(?<=[^\s*])\*")),
    ("_", re.compile(r"(?<!\w)_(?=[^\s_])(.{1,500}?)(?<=[^\s_])_(?!\w)")),
    ("~~", re.compile(r"~~(?=\S)(.{1,500}?)(?<=\S)~~")),
)
_MD_INLINE_MARKUP: Final = re.compile(r"[*_`\[\]<~\\]")
_MD_HTML_TAG: Final = re.compile(
    r"</?(?:a|abbr|b|br|center|code|del|details|div|em|h[1-6]|hr|i|img|kbd|li|ol|p|picture"
    r"|pre|source|span|strong|sub|summary|sup|table|tbody|td|th|thead|tr|u|ul)\b[^<>]*>",
    re.IGNORECASE,
)
_MD_FRONT_MATTER_TITLE: Final = re.compile(r"^title:\s*(.+?)\s*$")
# Escaped punctuation is parked in a private-use plane so that it never reads as markup.
_MD_PARKED: Final = 0xF0000


def _md_park(match: re.Match[str]) -> str:
    return chr(_MD_PARKED + ord(match.group(1)))


def _md_unpark(text: str) -> str:
    return "".join(
        chr(ord(c) - _MD_PARKED) if _MD_PARKED < ord(c) < _MD_PARKED + 128 else c for c in text
    )


def _md_inline(line: str, links: list[str]) -> str:
    """Markdown inline markup removed from one line; link targets are appended to links."""
    if _MD_INLINE_MARKUP.search(line) is None:
        return line
    if "\\" in line:
        line = _MD_ESCAPE.sub(_md_park, line)
    pieces: list[str] = []
    position = 0
    for match in _MD_CODE.finditer(line) if "`" in line else ():
        pieces.append(_md_spans(line[position : match.start()], links))
        pieces.append(match.group(2).strip())
        position = match.end()
    pieces.append(_md_spans(line[position:], links))
    text = "".join(pieces)
    if any(ord(c) > _MD_PARKED for c in text):
        text = _md_unpark(text)
    return text


def _md_link(links: list[str]) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        links.append(match.group(2).strip("<>"))
        return match.group(1)

    return replace


def _md_spans(text: str, links: list[str]) -> str:
    if "]" in text:
        if "![" in text:
            text = _MD_IMAGE.sub(r"\1", text)
        if "](" in text:
            text = _MD_LINK.sub(_md_link(links), text)
        if "][" in text:
            text = _MD_REF_LINK.sub(r"\1", text)
    if "<" in text:
        for match in _MD_AUTOLINK.finditer(text):
            links.append(match.group(1))
        text = _MD_AUTOLINK.sub(r"\1", text)
        text = _MD_HTML_TAG.sub("", text)
    for marker, pattern in _MD_EMPHASIS:
        if marker in text:
            text = pattern.sub(r"\1", text)
    return text


def _md_front_matter(lines: list[str]) -> tuple[list[str], str]:
    if not lines or lines[0].strip() != "---":
        return lines, ""
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            title = ""
            for line in lines[1:end]:
                match = _MD_FRONT_MATTER_TITLE.match(line)
                if match:
                    title = match.group(1).strip("\"'")
                    break
            return lines[end + 1 :], title
    return lines, ""


def extract_markdown(data: bytes) -> ExtractedDocument:
    """A Markdown document as plain text, with its ATX/setext headings and absolute links."""
    lines, front_title = _md_front_matter(_decode_text(data).split("\n"))
    out: list[str] = []
    headings: list[Heading] = []
    links: list[str] = []
    fence = ""
    paragraph_line = -1  # index in out of the previous line when it was paragraph text
    for raw in lines:
        if fence:
            if raw.strip().startswith(fence) and not raw.strip().strip(fence[0]):
                fence = ""
            else:
                out.append(raw.rstrip())
            paragraph_line = -1
            continue
        fence_match = _MD_FENCE.match(raw)
        if fence_match:
            fence = fence_match.group(1)
            paragraph_line = -1
            continue
        setext = _MD_SETEXT.match(raw)
        if setext and paragraph_line >= 0:
            level = 1 if setext.group(1)[0] == "=" else 2
            headings.append(Heading(level, out[paragraph_line]))
            out.append("")
            paragraph_line = -1
            continue
        if _MD_TABLE_RULE.match(raw):
            paragraph_line = -1
            continue
        if _MD_RULE.match(raw):
            out.append("")
            paragraph_line = -1
            continue
        reference = _MD_REFERENCE.match(raw)
        if reference:
            links.append(reference.group(1))
            paragraph_line = -1
            continue
        atx = _MD_ATX.match(raw)
        if atx:
            content = _MD_ATX_CLOSE.sub("", atx.group(2) or "")
            text = _collapse(_md_inline(content, links))
            if text:
                headings.append(Heading(len(atx.group(1)), text))
                out.extend(("", text, ""))
            paragraph_line = -1
            continue
        line = _MD_QUOTE.sub("", raw).strip()
        if line.startswith("|") and line.endswith("|") and len(line) > 1:
            line = line[1:-1].strip()
        plain = bool(line) and line == raw.strip()
        bullet = _MD_BULLET.match(line)
        if bullet:
            line = line[bullet.end() :]
            plain = False
        else:
            line = _MD_TASK.sub(r"\1", line)
        text = _collapse(_md_inline(line, links))
        out.append(text)
        paragraph_line = len(out) - 1 if plain and text else -1

    title = next((h.text for h in headings if h.level == 1), "") or front_title
    text = _tidy_lines(out)
    return ExtractedDocument(
        title=(title or _first_line(text))[:_MAX_TITLE],
        text=text,
        headings=headings,
        links=_unique_links(links, ""),
    )


# --- JSON -------------------------------------------------------------------------------------


def extract_json(data: bytes) -> ExtractedDocument:
    """A JSON document as "key.path: value" lines for its string and number leaves."""
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid JSON: the body is not valid {exc.encoding}") from exc
    except RecursionError as exc:
        raise ValueError("invalid JSON: nested too deeply") from exc
    except ValueError as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc

    lines: list[str] = []
    # Iterative walk: documents nested deeper than the recursion limit still work.
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            children = [(f"{path}.{key}" if path else str(key), v) for key, v in node.items()]
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(f"{path}[{i}]", v) for i, v in enumerate(node)]))
        elif isinstance(node, str):
            leaf = _collapse(node)
            if leaf:
                lines.append(f"{path}: {leaf}" if path else leaf)
        elif isinstance(node, int | float) and not isinstance(node, bool):
            lines.append(f"{path}: {node!r}" if path else repr(node))
    return ExtractedDocument(title="", text="\n".join(lines))


# --- CSV --------------------------------------------------------------------------------------


def _csv_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in ",;\t|"}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def extract_csv(data: bytes) -> ExtractedDocument:
    """A CSV table as one "header: value; ..." line per row (first row is the header)."""
    text = _decode_text(data).replace("\x00", "")
    first_line = next((line for line in text[:4096].split("\n") if line.strip()), "")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_csv_delimiter(first_line))
    lines: list[str] = []
    header: list[str] = []
    rows = 0
    try:
        for row in reader:
            if not header:
                header = [_collapse(cell) for cell in row]
                continue
            rows += 1
            if rows > MAX_CSV_ROWS:
                break
            pairs = []
            for index, cell in enumerate(row):
                value = _collapse(cell)
                if value:
                    name = header[index] if index < len(header) and header[index] else ""
                    pairs.append(f"{name or f'column {index + 1}'}: {value}")
            if pairs:
                lines.append("; ".join(pairs))
    except csv.Error as exc:
        raise ValueError(f"invalid CSV at line {reader.line_num}: {exc}") from exc
    return ExtractedDocument(title="", text="\n".join(lines))
