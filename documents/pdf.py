"""Text, title and outline headings of a PDF (pypdf), bounded for untrusted files."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from pypdf import PasswordType, PdfReader

from documents.extract import ExtractedDocument, Heading, _collapse, _tidy_lines

__all__ = ["MAX_PDF_CHARACTERS", "MAX_PDF_PAGES", "PDF_TIME_BUDGET_S", "extract_pdf", "file_title"]

MAX_PDF_PAGES: Final = 2_000
MAX_PDF_CHARACTERS: Final = 5_000_000
# Each page's work is bounded by pypdf's own limits; this bounds the sum over pages.
PDF_TIME_BUDGET_S: Final = 30.0
_MAX_TITLE: Final = 200
_MAX_HEADINGS: Final = 500

# pypdf logs every repaired defect of a malformed file as a warning; one crawl can hold many.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def file_title(url: str) -> str:
    """The file name in a URL or path, without its extension: a title of last resort."""
    try:
        path = urlsplit(url).path if "://" in url else url
    except ValueError:
        return ""
    name = PurePosixPath(unquote(path)).name
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    return _collapse(stem)[:_MAX_TITLE]


def _text(value: Any) -> str:
    return _collapse(str(value)) if isinstance(value, str) else ""


def _outline(entries: Iterable[Any], level: int, out: list[Heading]) -> None:
    for entry in entries:
        if len(out) >= _MAX_HEADINGS:
            return
        if isinstance(entry, list):
            _outline(entry, min(level + 1, 6), out)
            continue
        title = _text(getattr(entry, "title", None))
        if title:
            out.append(Heading(level=level, text=title[:_MAX_TITLE]))


def _read(data: bytes, name: str, deadline: float) -> ExtractedDocument:
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        # Permissions-only files open with the empty user password; the others need a secret.
        raise ValueError("the PDF is encrypted with a password; encrypted PDFs are not indexed")
    metadata = reader.metadata
    title = _text(metadata.title if metadata is not None else None)[:_MAX_TITLE]
    pages: list[str] = []
    size = 0
    for number, page in enumerate(reader.pages):
        if number >= MAX_PDF_PAGES or size >= MAX_PDF_CHARACTERS or time.monotonic() > deadline:
            break  # what was read so far is indexed, like a page cut at the size limit
        text = _tidy_lines(page.extract_text().replace("\x00", "").split("\n"))
        if text:
            pages.append(text[: MAX_PDF_CHARACTERS - size])
            size += len(pages[-1]) + 2
    headings: list[Heading] = []
    try:
        _outline(reader.outline, 1, headings)
    except Exception:  # a broken outline costs the headings, never the text
        headings = []
    return ExtractedDocument(
        title=title or file_title(name),
        text="\n\n".join(pages),
        headings=headings,
    )


def extract_pdf(data: bytes, *, name: str = "") -> ExtractedDocument:
    """A PDF's text page by page; its title from the metadata, else from `name` (a URL or path).

    At most MAX_PDF_PAGES pages and MAX_PDF_CHARACTERS characters are read, within
    PDF_TIME_BUDGET_S. Encrypted files that need a password, and files pypdf cannot read,
    raise ValueError.
    """
    if b"%PDF-" not in data[:1024]:
        raise ValueError("not a PDF: no %PDF- header")
    deadline = time.monotonic() + PDF_TIME_BUDGET_S
    try:
        return _read(data, name, deadline)
    except ValueError:
        raise
    # A malformed file can fail anywhere inside pypdf, with any exception type.
    except Exception as exc:
        raise ValueError(f"{type(exc).__name__}: {str(exc)[:200] or 'malformed file'}") from exc
