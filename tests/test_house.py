"""Shared pieces of the house: the one progress helper and the one home of the protocol constants."""

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


def test_protocol_constants_have_one_home():
    """The authors' ε and penalties are defined once; every user reads the same objects."""
    from repmatch import mms, protocol, reproduce, sparse
    from repmatch.cli import compare

    assert protocol.AUTHORS_EPS == (0.15, 0.2, 0.25, 0.3, 0.5)
    assert set(protocol.AUTHORS_EPS) <= set(protocol.DEFAULT_EPS_GRID) and len(protocol.DEFAULT_EPS_GRID) == 40
    assert mms.HEADLINE_GRID is protocol.DEFAULT_EPS_GRID and reproduce.AUTHORS_EPS is protocol.AUTHORS_EPS
    assert compare.DEFAULT_EPS is protocol.AUTHORS_EPS and sparse.DEFAULT_ALPHAS is protocol.AUTHORS_ALPHAS
    assert set(protocol.PIPELINE_ALPHAS) <= {round(a, 6) for a in protocol.AUTHORS_ALPHAS}
