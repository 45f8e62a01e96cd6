"""Perceptual path length in W or Z (Karras et al. 2019, 2020), measured with ST-LPIPS: `ppl_stlpips`.

In W (`space='w'`, the default) the path is a straight line between two mapped latents; in Z
(`space='z'`, StyleGAN Sec. 4.2, Eq. 2) it is the spherical interpolation of the two z (the official
`slerp`: on the unit sphere, normalized again after it) and the mapping runs on each point.

The protocol follows the official StyleGAN2-ADA metric `ppl_wend` (metrics/perceptual_path_length.py)
except for the distance network, and records every choice:

- z0, z1 ~ N(0, I) from numpy RandomState(seed) (one draw of [num, 2, z_dim], float64 -> float32);
  t ~ U(0, 1) from the same stream when sampling='full', t = 0 when sampling='end' (the official code
  draws `rand() * 0`: 'end' means the path's start point, not t in {0, 1}).
- w0, w1 = mapping(z0, c), mapping(z1, c) (no truncation); wa = lerp(w0, w1, t), wb = lerp(w0, w1, t + eps).
- Both rendered with noise_mode='const' (the official code re-randomises the const noise buffers
  per batch; here they stay as trained, which keeps G unmodified and both images of a pair share
  the noise either way).
- crop (off by default, for non-face data): the official FFHQ centre crop rows 3/8..7/8, cols 2/8..6/8.
- Larger than 256: box-downsampled by the integer factor resolution // 256, as the official code.
  Smaller than ST-LPIPS's minimum (32): repeated by the smallest integer factor that reaches it
  (nearest neighbour; gancli-specific, the official metric never meets such images).
  Grey images are repeated to 3 channels.
- d = ST-LPIPS(img_a, img_b) / eps^2 (images in [-1, 1]); keep d within [1st percentile ('lower'),
  99th percentile ('higher')]; PPL = mean of those.
- Conditional generators: class labels uniform over classes from numpy default_rng((seed, 2)) (the
  official code draws dataset labels).

Values use ST-LPIPS, not the official VGG16 LPIPS: they are not comparable with published PPL.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from gancli.errors import UserError

__all__ = ["ppl", "path_distances", "prepare_images", "slerp", "SAMPLINGS", "SPACES", "DEFAULT_EPSILON", "DEFAULT_NUM"]

SAMPLINGS = ("end", "full")
SPACES = ("w", "z")
DEFAULT_EPSILON = 1e-4
DEFAULT_NUM = 50000


def _device_of(module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def prepare_images(img: torch.Tensor, crop: bool = False, min_size: int = 32) -> torch.Tensor:
    """[N, C, H, W] generator output -> the ST-LPIPS input: optional FFHQ crop, downsample to 256, RGB."""
    factor = img.shape[2] // 256  # the official code: G.img_resolution // 256, also after the crop
    if crop:
        if img.shape[2] != img.shape[3]:
            raise UserError(f"--crop: the face crop needs square images, got {img.shape[2]}x{img.shape[3]}")
        c = img.shape[2] // 8
        img = img[:, :, c * 3: c * 7, c * 2: c * 6]
    if factor > 1:
        img = img.reshape(img.shape[0], img.shape[1], img.shape[2] // factor, factor,
                          img.shape[3] // factor, factor).mean(dim=(3, 5))
    if img.shape[1] == 1:
        img = img.repeat(1, 3, 1, 1)
    small = min(img.shape[2], img.shape[3])
    if small < min_size:
        up = math.ceil(min_size / small)
        img = F.interpolate(img, scale_factor=up, mode="nearest")
    return img


def _resolve_lpips(lpips, device):
    from gancli.metrics.stlpips import STLPIPS, load_stlpips

    if lpips is None or isinstance(lpips, str):
        return load_stlpips(lpips or "vgg", device=str(device))
    if isinstance(lpips, STLPIPS):
        return lpips.to(device)
    if callable(lpips):
        return lpips
    raise UserError(f"--lpips {lpips!r}: give an ST-LPIPS variant ('vgg' or 'alex')")


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of `a` and `b` ([N, D]) at `t` ([N, 1]), a unit vector
    (the official StyleGAN `slerp`: normalize both, rotate by t * angle in their plane, normalize)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True)
    p = t * torch.acos(d.clamp(-1, 1))
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=-1, keepdim=True)


def _check(num, epsilon, sampling, seed, batch, space="w"):
    for name, value, minimum in (("--num", num, 1), ("--seed", seed, 0), ("--batch", batch, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise UserError(f"{name} {value!r} is not allowed: use a whole number >= {minimum}")
    try:
        epsilon = float(epsilon)
    except (TypeError, ValueError):
        raise UserError(f"--epsilon {epsilon!r}: use a small positive number, e.g. 1e-4") from None
    if not math.isfinite(epsilon) or not 0 < epsilon <= 1:
        raise UserError(f"--epsilon {epsilon}: use a positive number at most 1, e.g. 1e-4")
    if sampling not in SAMPLINGS:
        raise UserError(f"--sampling {sampling!r}: allowed: {', '.join(SAMPLINGS)}")
    if space not in SPACES:
        raise UserError(f"--ppl-space {space!r}: allowed: {', '.join(SPACES)}")
    return epsilon


def path_distances(loaded, num: int = DEFAULT_NUM, epsilon: float = DEFAULT_EPSILON, sampling: str = "end",
                   seed: int = 0, batch: int = 16, lpips=None, crop: bool = False, space: str = "w") -> np.ndarray:
    """The num raw distances ST-LPIPS(G(wa), G(wb)) / epsilon^2 (float64 array), before the percentile filter.

    space 'z': the path points are slerp(z0, z1, t) and slerp(z0, z1, t + eps), each mapped to W."""
    epsilon = _check(num, epsilon, sampling, seed, batch, space)
    G = getattr(loaded, "G", loaded)
    if not (hasattr(G, "mapping") and hasattr(G, "synthesis")):
        raise UserError(f"{getattr(loaded, 'path', 'the generator')}: perceptual path length in W needs a style-based "
                        f"generator (mapping + synthesis)")
    device = _device_of(G)
    dist_fn = _resolve_lpips(lpips, device)
    rng = np.random.RandomState(seed)
    z = rng.randn(num, 2, int(G.z_dim))
    t = rng.uniform(size=num) if sampling == "full" else np.zeros(num)
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    c_all = None
    if c_dim > 0:
        cls = np.random.default_rng((seed, 2)).integers(0, c_dim, size=num)
        c_all = np.eye(c_dim, dtype=np.float32)[cls]
    out = []
    with torch.no_grad():
        for i in range(0, num, batch):
            n = min(batch, num - i)
            zb = torch.from_numpy(z[i:i + n].reshape(2 * n, -1)).to(device=device, dtype=torch.float32)
            c = None
            if c_all is not None:
                c = torch.from_numpy(np.repeat(c_all[i:i + n], 2, axis=0)).to(device)
            if space == "z":
                tz = torch.from_numpy(t[i:i + n]).to(device=device, dtype=torch.float32).view(-1, 1)
                z0, z1 = zb[0::2], zb[1::2]
                za = torch.cat([slerp(z0, z1, tz), slerp(z0, z1, tz + epsilon)])
                cz = torch.cat([c[0::2], c[0::2]]) if c is not None else None
                wa, wb = G.mapping(za, cz).chunk(2)
            else:
                ws = G.mapping(zb, c)
                w0, w1 = ws[0::2], ws[1::2]
                tb = torch.from_numpy(t[i:i + n]).to(device=device, dtype=torch.float32).view(-1, *([1] * (w0.ndim - 1)))
                wa = torch.lerp(w0, w1, tb)
                wb = torch.lerp(w0, w1, tb + epsilon)
            img = G.synthesis(torch.cat([wa, wb]), noise_mode="const").float()
            img = prepare_images(img, crop=crop)
            d = dist_fn(img[:n], img[n:]).reshape(n).double() / epsilon ** 2
            out.append(d.cpu().numpy())
    return np.concatenate(out)


def filtered_mean(dist: np.ndarray) -> float:
    """Mean of the distances within [1st percentile (lower), 99th percentile (higher)], as the official code."""
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return float(np.extract(np.logical_and(dist >= lo, dist <= hi), dist).mean())


def ppl(loaded, num: int = DEFAULT_NUM, epsilon: float = DEFAULT_EPSILON, sampling: str = "end", seed: int = 0,
        batch: int = 16, lpips=None, crop: bool = False, space: str = "w") -> float:
    """ppl_stlpips of a loaded style-based generator (or a bare G with mapping/synthesis).

    lpips: None = ST-LPIPS VGG from stlpips-pytorch; 'vgg' / 'alex'; an `STLPIPS`; or any callable
    (x, y) -> [N] on images in [-1, 1]. Same arguments, same number.
    """
    return filtered_mean(path_distances(loaded, num, epsilon, sampling, seed, batch, lpips, crop, space))
