"""Assertions shared by the tests (import as `from helpers import ...`)."""

from __future__ import annotations


def assert_user_error(result, *fragments: str) -> None:
    """One line on stderr naming what went wrong, exit code 2, no traceback."""
    assert result.code == 2, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result
    assert lines[0].startswith("error: "), result
    assert "Traceback" not in result.err + result.out
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
