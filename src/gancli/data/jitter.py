"""Colour jitter of the real images a training step reads (`data.color_jitter`; the practice of the
Kaggle "Generative Dog Images" entries): small random brightness, contrast, saturation and hue changes.

It acts on the reals of the training stream only (`Trainer.next_batch`), never on the images of
`gancli evaluate`, the reals grid or metric statistics. Its factors are drawn from a generator seeded
by (train.seed, step, minibatch of the step), so a resumed run draws the same ones.
"""

from __future__ import annotations

import math

import torch

# Luma weights of ITU-R BT.601 (the grey that saturation blends toward, and that hue rotation keeps).
LUMA = (0.299, 0.587, 0.114)


def jitter_factors(n: int, strengths: list[float], gen: torch.Generator) -> torch.Tensor:
    """[n, 4] factors: brightness, contrast and saturation multipliers from U[1 - s, 1 + s], and a hue
    rotation in turns from U[-s_hue, s_hue], for `strengths` = (s_b, s_c, s_s, s_hue)."""
    u = torch.rand([n, 4], generator=gen, dtype=torch.float64) * 2 - 1
    s = torch.tensor(strengths, dtype=torch.float64)
    f = u * s
    f[:, :3] += 1
    return f


def random_crops(images: torch.Tensor, offsets: torch.Tensor, size: int) -> torch.Tensor:
    """`size` x `size` crops of images [N, C, S, S] at per-image (top, left) `offsets` [N, 2]
    (`data.random_crop`: store at 80 px, train on random 64 px crops)."""
    return torch.stack([img[:, int(t):int(t) + size, int(u):int(u) + size] for img, (t, u) in zip(images, offsets)])


def centre_crop(images, size: int):
    """The centre `size` x `size` crop of images [N, C, S, S] (numpy or torch): what evaluation uses."""
    o = (images.shape[-1] - size) // 2
    return images[..., o:o + size, o:o + size]


def _grey(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def hue_rotate(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma of RGB images [N, 3, H, W] about the grey axis by `turns` [N] (YIQ space):
    the luma is kept, and a rotation by t then -t is the identity."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=x.dtype, device=x.device)
    from_yiq = torch.linalg.inv(to_yiq)
    angle = turns.to(x.dtype).to(x.device) * 2 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros([len(angle), 3, 3], dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = from_yiq @ rot @ to_yiq  # [N, 3, 3]
    return torch.einsum("nij,njhw->nihw", m, x)


def color_jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] [N, 3, H, W] with per-image `factors` [N, 4] (see `jitter_factors`), in this
    order: brightness (x b), contrast (blend with the image's mean grey), saturation (blend with each
    pixel's grey), hue rotation; the result is clamped to [-1, 1]."""
    if images.shape[1] != 3:
        return images  # grey images have no saturation or hue; only reals of 3 channels are jittered
    f = factors.to(images.device, images.dtype)
    x = (images + 1) / 2
    x = x * f[:, 0, None, None, None]
    mean = _grey(x).mean(dim=[1, 2, 3], keepdim=True)
    x = (x - mean) * f[:, 1, None, None, None] + mean
    grey = _grey(x)
    x = (x - grey) * f[:, 2, None, None, None] + grey
    x = hue_rotate(x, f[:, 3])
    return (x.clamp(0, 1) * 2 - 1).to(images.dtype)
