"""The one progress helper: bars only on a terminal, the iterable unchanged otherwise."""

import io
import sys

from repmatch import _progress


class _FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_no_bar_when_disabled_or_not_a_terminal(monkeypatch):
    items = [1, 2, 3]
    assert _progress.progress(items, desc="x", enabled=False) is items
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert _progress.progress(items, desc="x") is items
    assert not _progress.stderr_is_tty()


def test_closed_stderr_is_not_a_terminal(monkeypatch):
    s = io.StringIO()
    s.close()
    monkeypatch.setattr(sys, "stderr", s)
    assert not _progress.stderr_is_tty()


def test_bar_on_a_terminal_yields_every_item_and_counts_them(monkeypatch):
    fake = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    bar = _progress.progress(range(5), desc="work", unit="neuron")
    assert bar is not None and not isinstance(bar, range)
    assert list(bar) == [0, 1, 2, 3, 4]
    assert bar.total == 5
    assert "work" in fake.getvalue()
