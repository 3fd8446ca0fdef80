"""Deterministic, accessible SVG/PNG charts: a matplotlib figure (Agg, no pyplot) and its rendering."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal
from xml.sax.saxutils import escape

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

ChartFormat = Literal["svg", "png"]

_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "trellis",
    "font.family": "DejaVu Sans",
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.labelsize": 11,
    "path.simplify": True,
}


@contextmanager
def figure(width: float = 7.0, height: float = 4.5) -> Iterator[Figure]:
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def render(fig: Figure, fmt: ChartFormat, title: str, description: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "svg":
        fig.savefig(buf, format="svg", metadata={"Date": None})
        return accessible_svg(buf.getvalue(), title, description)
    if fmt == "png":
        fig.savefig(buf, format="png", metadata={"Software": None, "Title": title})
        return buf.getvalue()
    raise ValueError(f"unsupported chart format {fmt!r}")


def accessible_svg(svg: bytes, title: str, description: str) -> bytes:
    """Add role, <title> and <desc> (a text version of the data) for screen readers."""
    text = svg.decode("utf-8")
    start = text.index("<svg")
    end = text.index(">", start)
    head = text[start:end]
    attrs = ' role="img" aria-labelledby="chart-title chart-desc"'
    inserted = (
        f'<title id="chart-title">{escape(title)}</title>'
        f'<desc id="chart-desc">{escape(description)}</desc>'
    )
    return (text[:start] + head + attrs + text[end] + inserted + text[end + 1 :]).encode("utf-8")
