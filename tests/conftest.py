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


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """12 tiny 16x16 training images (a coloured square on white) for training tests."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("tinydata")
    rng = np.random.RandomState(0)
    for i in range(12):
        image = np.full((16, 16, 3), 255, np.uint8)
        y, x = rng.randint(0, 10, 2)
        image[y: y + 6, x: x + 6] = rng.randint(0, 255, 3)
        Image.fromarray(image).save(folder / f"img{i:02d}.png")
    return folder


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


@pytest.fixture(scope="session")
def labelled_data(tmp_path_factory):
    """12 images of 16x16 in 3 classes (a coloured square per image), with dataset.json labels."""
    import json

    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("labelled")
    rng = np.random.RandomState(0)
    labels = []
    for i in range(12):
        image = np.full((16, 16, 3), 255, np.uint8)
        y, x = rng.randint(0, 10, 2)
        image[y: y + 6, x: x + 6] = [(200, 0, 0), (0, 200, 0), (0, 0, 200)][i % 3]
        Image.fromarray(image).save(folder / f"{i:02d}.png")
        labels.append([f"{i:02d}.png", i % 3])
    (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    return folder
