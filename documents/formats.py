"""Text of a document by its content type (Kendra's ContentType names)."""

from __future__ import annotations

from documents.extract import (
    ExtractedDocument,
    extract_csv,
    extract_html,
    extract_json,
    extract_markdown,
    extract_plain_text,
)
from documents.pdf import extract_pdf
from runtime.errors import ValidationFailed

SUPPORTED = ("PLAIN_TEXT", "HTML", "MD", "CSV", "JSON", "PDF")


def plain(text: str, title: str = "") -> ExtractedDocument:
    return ExtractedDocument(title=title, text=text)


def extract_for(content_type: str, data: bytes, *, base_url: str = "") -> ExtractedDocument:
    """Extract text, title and headings; unsupported types and unreadable bodies raise ValidationFailed.

    `base_url` resolves an HTML page's links, and names a PDF without a title in its metadata.
    """
    try:
        if content_type == "PLAIN_TEXT":
            return extract_plain_text(data)
        if content_type == "HTML":
            return extract_html(data, base_url)
        if content_type == "MD":
            return extract_markdown(data)
        if content_type == "CSV":
            return extract_csv(data)
        if content_type == "JSON":
            return extract_json(data)
        if content_type == "PDF":
            return extract_pdf(data, name=base_url)
    except ValueError as exc:
        raise ValidationFailed(f"the {content_type} document is unreadable: {exc}") from None
    raise ValidationFailed(
        f"ContentType {content_type} is not supported; use one of {list(SUPPORTED)}"
    )
