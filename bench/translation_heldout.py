"""Held-out scores of a translation run on its toy task (docs/translation.md): L1 and PSNR against the
ground truth, next to the identity and mean-image baselines, as JSON.

    python bench/translation_heldout.py RUN_DIR_OR_SNAPSHOT [--direction AtoB|BtoA]

The emoji tasks are Twemoji artwork by Twitter, Inc. (CC-BY 4.0).
"""

from __future__ import annotations

import argparse
import json

from gancli.metrics.translation import heldout_scores
from gancli.models import load_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--direction", choices=["AtoB", "BtoA"])
    args = parser.parse_args()
    loaded = load_generator(args.ckpt)
    if args.direction is not None:
        loaded = load_generator(args.ckpt, which=loaded.family.translation_module(loaded.recipe, args.direction))
    print(json.dumps(heldout_scores(loaded, args.direction), indent=2))


if __name__ == "__main__":
    main()
