"""A report as a list of blocks, rendered to Markdown (``report.md``) and to a self-contained HTML
page (``report.html``, figures embedded as PNG data URIs, no script, nothing fetched).

Blocks: :class:`Heading`, :class:`Paragraph` (``**bold**`` and ```code``` are honoured in both
renderings), :class:`Table` and :class:`Figure` (a PNG; in Markdown a pointer to the HTML page,
which holds the image).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtlkit.atomic import write_text_atomic


@dataclass(frozen=True)
class Heading:
    """A section heading; ``level`` 2 is a section, 3 a sub-section (1 is the title)."""

    text: str
    level: int = 2

    def markdown(self) -> str:
        """The heading in Markdown."""
        return f"{'#' * self.level} {self.text}"

    def html(self) -> str:
        """The heading in HTML."""
        return f"<h{self.level}>{html.escape(self.text)}</h{self.level}>"


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of text; ``**bold**`` and ```code``` spans are rendered in HTML too."""

    text: str

    def markdown(self) -> str:
        """The paragraph in Markdown (as written)."""
        return self.text

    def html(self) -> str:
        """The paragraph in HTML."""
        return f"<p>{_inline_html(self.text)}</p>"


@dataclass(frozen=True)
class Table:
    """A table of strings; the first ``text_columns`` columns are left-aligned, the rest right."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    text_columns: int = 1

    def markdown(self) -> str:
        """A padded pipe table."""
        return markdown_table(self.header, self.rows, self.text_columns)

    def html(self) -> str:
        """An HTML table, numbers right-aligned."""

        def row(cells: Sequence[str], tag: str) -> str:
            items = []
            for i, cell in enumerate(cells):
                align = "" if i < self.text_columns else ' class="num"'
                items.append(f"<{tag}{align}>{_inline_html(cell)}</{tag}>")
            return "<tr>" + "".join(items) + "</tr>"

        body = "\n".join(row(cells, "td") for cells in self.rows)
        head = row(self.header, "th")
        return f"<table>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


@dataclass(frozen=True)
class Figure:
    """A PNG image and its caption."""

    png: bytes
    caption: str

    def markdown(self) -> str:
        """A pointer to the HTML page, which holds the image."""
        return f"*Figure: {self.caption} (in report.html)*"

    def html(self) -> str:
        """The image as a PNG data URI, with its caption."""
        data = base64.b64encode(self.png).decode("ascii")
        caption = html.escape(self.caption)
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )


Block = Heading | Paragraph | Table | Figure


@dataclass
class Document:
    """A titled list of blocks."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Document:
        """Append ``blocks``; returns ``self``."""
        self.blocks.extend(blocks)
        return self


def to_markdown(document: Document) -> str:
    """The document as Markdown (figures become a line pointing to ``report.html``)."""
    parts = [f"# {document.title.strip()}", *(block.markdown() for block in document.blocks)]
    return "\n\n".join(parts) + "\n"


def to_html(document: Document) -> str:
    """The document as one self-contained HTML page."""
    title = html.escape(document.title.strip())
    body = [f"<h1>{title}</h1>", *(block.html() for block in document.blocks)]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_STYLE}</style>\n"
        "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_markdown(path: str | Path, document: Document) -> Path:
    """Write ``document`` as Markdown to ``path``, atomically; returns the path."""
    return write_text_atomic(path, to_markdown(document))


def write_reports(folder: str | Path, document: Document) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` of ``document`` into ``folder``, atomically."""
    folder = Path(folder)
    return (
        write_markdown(folder / "report.md", document),
        write_text_atomic(folder / "report.html", to_html(document)),
    )


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1
) -> str:
    """A padded pipe table; columns after the first ``text_columns`` are right-aligned."""
    lines = [[_escape(cell) for cell in line] for line in [header, *rows]]
    widths = column_widths(lines)
    rule = [
        "-" * width if i < text_columns else "-" * (width - 1) + ":"
        for i, width in enumerate(widths)
    ]
    padded = [padded_cells(line, widths, text_columns) for line in lines]
    return "\n".join("| " + " | ".join(line) + " |" for line in [padded[0], rule, *padded[1:]])


def column_widths(lines: Sequence[Sequence[str]]) -> list[int]:
    """The width of each column: its longest cell, at least 3."""
    return [max(3, *(len(line[i]) for line in lines)) for i in range(len(lines[0]))]


def padded_cells(cells: Sequence[str], widths: Sequence[int], text_columns: int) -> list[str]:
    """``cells`` padded to ``widths``: left-aligned text columns, right-aligned after them."""
    return [
        cell.ljust(width) if i < text_columns else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths))
    ]


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def _inline_html(text: str) -> str:
    escaped = html.escape(text)
    return _CODE.sub(r"<code>\1</code>", _BOLD.sub(r"<strong>\1</strong>", escaped))


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; }
th { background: #f3f3f3; } td.num, th.num { text-align: right;
  font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""
