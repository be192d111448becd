"""A self-contained HTML page: figures inlined as SVG, tables, text; no external resources.

The page reads top-down as a list of sections; each section has a heading, paragraphs, figures
(inline SVG with a caption) and tables (header + rows). Everything user-supplied is escaped.
"""

from __future__ import annotations

import html
import os
import re

__all__ = ["HtmlReport"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
figure { margin: 1.2em 0; } figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #555; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child, td.text { text-align: left; }
.note { background: #f7f7fb; border-left: 3px solid #8a8acb; padding: 0.5em 0.9em; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""

_XML_DECL = re.compile(r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*", re.S)


class HtmlReport:
    """Build a report section by section, then :meth:`write` it atomically."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self.subtitle = subtitle
        self._parts: list[str] = []
        self._n_fig = 0

    def section(self, heading: str, anchor: str | None = None) -> "HtmlReport":
        anchor = anchor or re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
        self._parts.append(f'<h2 id="{html.escape(anchor)}">{html.escape(heading)}</h2>')
        return self

    def paragraph(self, text: str, *, note: bool = False) -> "HtmlReport":
        cls = ' class="note"' if note else ""
        self._parts.append(f"<p{cls}>{html.escape(text)}</p>")
        return self

    def figure(self, svg_text: str, caption: str, *, files: dict | None = None) -> "HtmlReport":
        """Inline an SVG figure (from :func:`~repmatch.report.plots.save_figure`) with a caption."""
        self._n_fig += 1
        svg = _XML_DECL.sub("", svg_text)
        links = ""
        if files:
            # Relative paths are links from the page's directory; absolute ones keep only the file name.
            names = [f'<a href="{html.escape(os.path.basename(p) if os.path.isabs(p) else p.replace(os.sep, "/"))}">'
                     f'{fmt.upper()}</a>' for fmt, p in files.items() if fmt in ("png", "svg")]
            links = " (" + ", ".join(names) + ")"
        self._parts.append(
            f'<figure id="fig{self._n_fig}">{svg}<figcaption>Figure {self._n_fig}. '
            f"{html.escape(caption)}{links}</figcaption></figure>"
        )
        return self

    def table(self, header, rows, caption: str = "") -> "HtmlReport":
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td{_align(c)}>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>"
                       for row in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self._parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self

    def render(self) -> str:
        sub = f"<p>{html.escape(self.subtitle)}</p>" if self.subtitle else ""
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{sub}" + "\n".join(self._parts) + "</body></html>\n"
        )

    def write(self, path) -> str:
        from .._atomic import atomic_write_text

        return atomic_write_text(path, self.render())


_NUMBER = re.compile(r"^[-+]?[\d.,]+(e[-+]?\d+)?%?( \(.*\))?$|^[–-]$")


def _align(c) -> str:
    """Text cells align left; numbers (and "0.12 (p≤0.1)"-style cells) stay right-aligned."""
    if isinstance(c, str) and c and not _NUMBER.match(c.strip()):
        return ' class="text"'
    return ""


def _fmt(c) -> str:
    if isinstance(c, float):
        return f"{c:.4g}"
    return str(c)
