"""Plots and the self-contained HTML report (needs matplotlib: ``pip install 'repmatch[full]'``)."""

from .html import HtmlReport

__all__ = ["HtmlReport"]
