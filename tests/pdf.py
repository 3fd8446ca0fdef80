"""Small PDFs for tests, written with pypdf: Helvetica text pages, metadata, outline, encryption."""

from __future__ import annotations

import io
from collections.abc import Sequence

from pypdf import PdfWriter
from pypdf.generic import ContentStream, DictionaryObject, NameObject


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(
    pages: Sequence[str],
    *,
    title: str | None = None,
    outline: Sequence[tuple[int, str]] = (),
    user_password: str | None = None,
    owner_password: str | None = None,
) -> bytes:
    """One page per string (a line per line), titled and outlined as asked, encrypted if asked.

    `outline` holds (level 1 or 2, title) bookmarks; a level 2 one nests in the last level 1.
    """
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        shown = "".join(f"({_escape(line)}) Tj 0 -16 Td " for line in text.split("\n"))
        stream = ContentStream(None, writer)
        stream.set_data(f"BT /F1 12 Tf 72 720 Td {shown}ET".encode("latin-1"))
        page.replace_contents(stream)
    parent = None
    for number, (level, heading) in enumerate(outline):
        item = writer.add_outline_item(
            title=heading,
            page_number=min(number, len(pages) - 1),
            parent=parent if level == 2 else None,
        )
        if level == 1:
            parent = item
    if title is not None:
        writer.add_metadata({"/Title": title})
    if user_password is not None or owner_password is not None:
        writer.encrypt(
            user_password=user_password or "", owner_password=owner_password, algorithm="AES-128"
        )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
