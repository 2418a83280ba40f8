"""A report page as a few kinds of blocks, written out as Markdown or as HTML.

Why: report.md and report.html must say the same thing. Building the page once as blocks and
rendering each format from them keeps them equal without turning one format into the other
(no Markdown is parsed anywhere).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 1


@dataclass(frozen=True)
class Para:
    """One paragraph of plain and bold runs: ``((text, bold), ...)``."""

    parts: tuple[tuple[str, bool], ...]


@dataclass(frozen=True)
class Lines:
    """Consecutive statements: one paragraph in Markdown, one ``<p>`` each in HTML."""

    lines: tuple[str, ...]


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    head: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    alt: str
    file: str  # a PNG next to the page


Block = Heading | Para | Lines | Bullets | Table | Image


def para(*parts: str | tuple[str, bool]) -> Para:
    """``para("plain", ("bold", True), ...)``."""
    return Para(tuple(p if isinstance(p, tuple) else (p, False) for p in parts))


def bold(text: str) -> tuple[str, bool]:
    return (text, True)


def _md(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Para):
        return "".join(f"**{t}**" if b else t for t, b in block.parts)
    if isinstance(block, Lines):
        return "\n".join(block.lines)
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        row = lambda cells: "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"
        return "\n".join([row(block.head), "|" + "---|" * len(block.head), *map(row, block.rows)])
    return f"![{block.alt}]({block.file})"


def to_markdown(blocks: list[Block]) -> str:
    return "\n\n".join(text for b in blocks if (text := _md(b))) + "\n"


STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}")


def _html(block: Block, folder: Path) -> str:
    e = html.escape
    if isinstance(block, Heading):
        return f"<h{block.level}>{e(block.text)}</h{block.level}>"
    if isinstance(block, Para):
        return "<p>" + "".join(f"<b>{e(t)}</b>" if b else e(t) for t, b in block.parts) + "</p>"
    if isinstance(block, Lines):
        return "\n".join(f"<p>{e(line)}</p>" for line in block.lines)
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{e(item)}</li>" for item in block.items) + "</ul>" if block.items else ""
    if isinstance(block, Table):
        return ("<table><tr>" + "".join(f"<th>{e(str(c))}</th>" for c in block.head) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in block.rows)
                + "</table>")
    image = folder / block.file
    if not image.is_file():
        return f"<p>({e(block.alt)}: no image)</p>"
    data = base64.b64encode(image.read_bytes()).decode()
    return f"<p><img alt='{e(block.alt)}' src='data:image/png;base64,{data}'></p>"


def to_html(blocks: list[Block], folder: Path) -> str:
    """A self-contained page: the images next to it inlined, for MLflow's artifact view."""
    body = [_html(b, folder) for b in blocks]
    return "\n".join([f"<!doctype html><meta charset='utf-8'><style>{STYLE}</style>", *filter(None, body)]) + "\n"
