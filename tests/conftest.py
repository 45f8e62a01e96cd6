"""Shared test helpers."""

from __future__ import annotations

import os
import tempfile

# Tiny networks run fastest on one thread, and a second OpenMP thread spinning against other work on
# a 2-core machine makes every small convolution hundreds of times slower. Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Dataset and metric caches of the tests go to a fresh folder, never to the user's ~/.cache.
os.environ["GANCLI_CACHE"] = tempfile.mkdtemp(prefix="gancli-test-cache-")

import pytest  # noqa: E402

from gancli.cli import main


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-400:]!r}, err={self.err[-400:]!r})"


@pytest.fixture
def cli(capsys):
    """Run `gancli ARGS...` in-process; returns exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
