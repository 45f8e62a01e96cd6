"""Scores of a translator against ground truth on a held-out split (the emoji toy tasks, or any test
split of aligned pairs): per-image L1 and PSNR, next to two baselines that any useful translator must
beat: copying the input ('identity'), and the mean of the training targets ('mean image').

Pixels are compared as uint8 (the translator's output is quantized with the official rounding, as a
written PNG would be): L1 is the mean |x - y| / 255, PSNR is 10 log10(255^2 / MSE) per image, averaged
over images.
"""

from __future__ import annotations

import numpy as np


def l1_psnr(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Mean L1 (in [0, 1]) and mean per-image PSNR (dB) of uint8 images [N, ...] against targets."""
    d = pred.astype(np.float64) - target.astype(np.float64)
    l1 = float(np.abs(d).mean() / 255.0)
    mse = (d**2).reshape(len(d), -1).mean(1)
    psnr = 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))
    return l1, float(psnr.mean())


def heldout_arrays(loaded, direction: str | None = None, batch: int = 16):
    """(translations, inputs, targets, paired) as uint8 [N, 3, R, R] for the test split of the
    checkpoint's data (centre crops at data.resolution) in `direction` (default: the trained one);
    `targets` are the counterparts when the split is paired, else the target domain's test images."""
    import torch

    from gancli.data.translation import center_crop
    from gancli.render import to_uint8

    recipe, family = loaded.recipe, loaded.family
    test = family.open_dataset(recipe, split="test")
    crop = recipe.data.shape
    src, dst = center_crop(test.A, crop), center_crop(test.B, crop)
    if direction is not None and direction != recipe.train.direction:
        src, dst = dst, src
    device = next(loaded.G.parameters()).device
    outs = []
    for i in range(0, len(src), batch):
        x = torch.from_numpy(src[i:i + batch].copy()).to(device).float().div(127.5).sub(1)
        outs.append(to_uint8(family.translate(loaded.G, x)).transpose(0, 3, 1, 2))
    return np.concatenate(outs), src, dst, bool(test.paired)


def heldout_scores(loaded, direction: str | None = None, batch: int = 16) -> dict:
    """L1 / PSNR of `loaded` (a translator: `gancli.models.load_generator`) on its data's test split in
    `direction` (default: the trained one), against the ground-truth counterparts, with the identity
    and mean-image baselines. The test split must be paired (emoji-edges, emoji-skintone, A|B folders)."""
    from gancli.data.translation import center_crop
    from gancli.errors import UserError

    recipe = loaded.recipe
    pred, src, dst, paired = heldout_arrays(loaded, direction, batch)
    if not paired:
        raise UserError(f"{recipe.data.source}: its test split is not paired, so there is no ground truth to score against")
    train = loaded.family.open_dataset(recipe, split="train")
    swapped = direction is not None and direction != recipe.train.direction
    mean_from = center_crop(train.A if swapped else train.B, recipe.data.shape)
    mean_image = np.broadcast_to(np.rint(mean_from.astype(np.float64).mean(0)).astype(np.uint8), dst.shape)
    result = {"images": len(dst), "direction": direction or recipe.train.direction}
    for name, images in (("model", pred), ("identity", src), ("mean_image", mean_image)):
        l1, psnr = l1_psnr(images, dst)
        result[f"{name}_l1"], result[f"{name}_psnr"] = round(l1, 4), round(psnr, 2)
    return result


def evaluate_translator(loaded, names: list[str], *, direction: str | None = None, batch: int = 32, seed: int = 0,
                        detector_path=None, progress: bool = False) -> dict:
    """`gancli evaluate` of a translator: `names` (fid, kid, pr, is) of its translations of the test
    split against the target domain's test images, and L1 / PSNR against the counterparts when the
    split is paired. Returns {'results', 'protocol'} like `evaluate_generator`."""
    import os
    import tempfile
    import time

    from gancli.metrics.evaluate import evaluate_folders
    from gancli.render import save_png

    start = time.time()
    pred, _, dst, paired = heldout_arrays(loaded, direction, batch)
    results: dict = {}
    protocol: dict = {"split": "test", "direction": direction or loaded.recipe.train.direction,
                      "data": loaded.recipe.data.source, "n_test": len(pred), "paired": paired}
    if names:
        with tempfile.TemporaryDirectory() as tmp:
            for folder, images in (("target", dst), ("translated", pred)):
                os.makedirs(os.path.join(tmp, folder))
                for i, image in enumerate(images):
                    save_png(image.transpose(1, 2, 0), os.path.join(tmp, folder, f"{i:05d}.png"))
            r = evaluate_folders(os.path.join(tmp, "target"), os.path.join(tmp, "translated"), names, batch=batch,
                                 seed=seed, detector_path=detector_path, use_cache=False, progress=progress)
        results.update(r["results"])
        protocol.update({k: v for k, v in r["protocol"].items() if k not in ("data", "against")})
    if paired:
        results["l1"], results["psnr"] = l1_psnr(pred, dst)
    return {"results": results, "protocol": protocol, "timestamp": time.time(), "elapsed_s": round(time.time() - start, 3)}
