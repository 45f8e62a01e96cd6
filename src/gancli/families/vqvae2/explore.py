"""VQ-VAE-2 in the exploring commands: code mixing (`gancli mix`) and encoding (`gancli project`)."""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def sample_codes(family, G, seeds: list[int], temperature: float):
    """(top, bottom) codes of each seed's sample, one seed at a time (as `sample` renders them)."""
    device = next(G.parameters()).device
    tops, bottoms = [], []
    for s in seeds:
        z = family.latents([s], G.z_dim, device)
        top, bottom = G.sample_codes(z, temperature)
        tops.append(top)
        bottoms.append(bottom)
    return torch.cat(tops), torch.cat(bottoms)


@torch.no_grad()
def mix_grid(family, G, rows: list[int], cols: list[int], *, temperature: float = 1.0) -> np.ndarray:
    """Top row: the column seeds' samples; left column: the row seeds' samples; cell (r, c): the
    decoder given row r's top codes and column c's bottom codes. The top-left corner is white."""
    from gancli.render import make_grid, to_uint8

    seeds = list(dict.fromkeys(rows + cols))
    top, bottom = sample_codes(family, G, seeds, temperature)
    at = {s: i for i, s in enumerate(seeds)}
    decode = G.vqvae.decode_codes
    own = {s: decode(top[at[s]: at[s] + 1], bottom[at[s]: at[s] + 1]) for s in seeds}
    res = G.img_resolution
    blank = torch.ones(1, 3, res, res, device=top.device)
    cells = [blank] + [own[c] for c in cols]
    for r in rows:
        cells.append(own[r])
        cells += [decode(top[at[r]: at[r] + 1], bottom[at[c]: at[c] + 1]) for c in cols]
    return make_grid(to_uint8(torch.cat(cells)), len(rows) + 1, len(cols) + 1)


@torch.no_grad()
def code_walk(family, G, seeds: list[int], *, frames: int, curve: str, loop: bool, temperature: float) -> torch.Tensor:
    """Frames [F, 3, R, R]: the keyframe samples' code vectors [K, D, h, w] of each level along the
    path (`gancli.explore.path_points`), each position quantized to its nearest code, decoded."""
    from gancli.explore import path_points

    top, bottom = sample_codes(family, G, seeds, temperature)
    vq = G.vqvae
    levels = []
    for codes, quant in ((top, vq.quant_top), (bottom, vq.quant_bottom)):
        keys = quant.lookup(codes)
        path = path_points(keys.flatten(1), frames, curve, loop).view(-1, *keys.shape[1:])
        flat = path.permute(0, 2, 3, 1).reshape(-1, quant.dim)
        levels.append(quant.nearest(flat).view(path.shape[0], *codes.shape[1:]))
    return torch.cat([vq.decode_codes(levels[0][i: i + 1], levels[1][i: i + 1]) for i in range(levels[0].shape[0])])


@torch.no_grad()
def code_metrics(G, dataset, n: int, names: list[str], *, batch: int = 32) -> dict[str, float]:
    """The family's own metrics on the first n images of `dataset` (see `VQVAE2Family.own_metrics`)."""
    import math

    import torch.nn.functional as F

    from gancli.families.vqvae2.nets import perplexity
    from gancli.render import to_uint8

    device = next(G.parameters()).device
    vq = G.vqvae.eval()
    sq_err, psnrs, tops, bottoms = 0.0, [], [], []
    for start in range(0, n, batch):
        images, _ = dataset.get_batch(np.arange(start, min(start + batch, n)))
        x = torch.from_numpy(images).to(device).float() / 127.5 - 1
        _, _, _, top, bottom, _ = vq.encode(x)
        recon = vq.decode_codes(top, bottom)
        sq_err += float((recon.double() - x.double()).pow(2).sum())
        real = images.transpose(0, 2, 3, 1).astype(np.float64)
        for r, t in zip(to_uint8(recon).astype(np.float64), real):
            mse = float(np.mean((r - t) ** 2))
            psnrs.append(math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse))
        tops.append(top)
        bottoms.append(bottom)
    top, bottom = torch.cat(tops), torch.cat(bottoms)
    out: dict[str, float] = {"n_images": n}
    if "recon" in names:
        out["recon_mse"] = sq_err / (n * 3 * G.img_resolution**2)
        out["recon_psnr"] = float(np.mean(psnrs))
    if "codes" in names:
        for level, codes in (("top", top), ("bottom", bottom)):
            out[f"usage_{level}"] = float(torch.unique(codes).numel()) / G.n_embed
            out[f"perplexity_{level}"] = float(perplexity(codes, G.n_embed))
    if "nll" in names:
        bits = {}
        for level in ("top", "bottom"):
            total = 0.0
            for start in range(0, n, batch):
                t, b = top[start: start + batch], bottom[start: start + batch]
                logits = G.top_prior(t) if level == "top" else G.bottom_prior(b, t)
                target = t if level == "top" else b
                total += float(F.cross_entropy(logits.double(), target, reduction="sum")) / math.log(2)
            bits[level] = total
        n_top, n_bottom = top[0].numel() * n, bottom[0].numel() * n
        out["nll_top_bpd"] = bits["top"] / n_top
        out["nll_bottom_bpd"] = bits["bottom"] / n_bottom
        out["nll_bpd"] = (bits["top"] + bits["bottom"]) / (n_top + n_bottom)
        out["nll_uniform_bpd"] = math.log2(G.n_embed)
    return out


@torch.no_grad()
def encode_images(G, images: np.ndarray) -> dict:
    """uint8 NHWC [N, R, R, 3] -> codes of both levels, the reconstruction (uint8) and its PSNR (dB, on the
    uint8 pixels) per image."""
    from gancli.project import psnr, to_float
    from gancli.render import to_uint8

    device = next(G.parameters()).device
    vq = G.vqvae.eval()
    tops, bottoms, recons = [], [], []
    for image in images:  # one at a time: an image's result never depends on the others
        x = to_float(image[None], device)
        _, _, _, top, bottom, _ = vq.encode(x)
        tops.append(top)
        bottoms.append(bottom)
        recons.append(vq.decode_codes(top, bottom))
    recon = to_uint8(torch.cat(recons))
    return {"top": torch.cat(tops).cpu().numpy(), "bottom": torch.cat(bottoms).cpu().numpy(), "recon": recon,
            "psnr": [psnr(r, t) for r, t in zip(recon, images)]}
