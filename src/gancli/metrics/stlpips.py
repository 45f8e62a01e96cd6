"""ST-LPIPS: Shift-Tolerant LPIPS (Ghildyal & Liu, ECCV 2022), written here so it runs without torchvision.

The network reproduces `stlpips_pytorch.LPIPS(net=..., variant='shift_tolerant')` of the PyPI package
`stlpips-pytorch` (whose own code imports torchvision) and loads that package's weight files
`weights/vST0.0/{vgg,alex}_shift_tolerant.pth` strictly, by name. Those files are *full*: they hold the
backbone convolutions, the blur filters, the input scaling and the five linear heads.

    x, y in [-1, 1], NCHW, RGB
    s(x)      = (x - shift) / scale                      (shift = [-.030, -.088, -.188], scale = [.458, .448, .450])
    f_l(x)    = the backbone's l-th feature map (l = 1..5), unit-normalised over channels: f / (||f||_2 + 1e-10)
    d(x, y)   = sum_l mean_hw( w_l . (f_l(s(x)) - f_l(s(y)))^2 )       (w_l >= 0: a 1x1 conv, no bias)

Backbones (blur pooling, "BlurPool" of Zhang 2019: reflect-pad by 2, then a [1,2,1]x[1,2,1]/16
depthwise filter with stride 2):

- vgg:  VGG16 'D' where each 2x2/2 max pool becomes MaxPool(2, stride 1) + BlurPool; features taken
        after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (module indices 0-3, 4-9, 10-17, 18-25, 26-33).
- alex: AlexNet with conv1 at stride 1 + BlurPool before its ReLU, and each 3x3/2 max pool as
        MaxPool(3, stride 1) + BlurPool; features after relu1..relu5 (indices 0-2, 3-6, 7-10, 11-12, 13-14).

A user-supplied *vanilla* VGG16 LPIPS weight file (the full state_dict of `lpips.LPIPS(net='vgg')`:
net.slice*.N.weight/bias + lin*.model.1.weight, optionally scaling_layer.*) is also accepted
(`STLPIPS.from_file`); the original LPIPS release's `vgg.pth` holds only the linear heads and is refused
with a message saying what is missing. Call the result ST-LPIPS (or LPIPS for that vanilla file), never
mix the two names.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gancli.errors import UserError

__all__ = ["STLPIPS", "load_stlpips", "stlpips_file", "VARIANTS", "MIN_SIZE", "INSTALL_HINT"]

VARIANTS = ("vgg", "alex")
MIN_SIZE = 32  # smallest square input both backbones accept (reflection pads need > 2 pixels at depth 5)
INSTALL_HINT = "pip install --no-deps stlpips-pytorch"
_CHANNELS = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256), "vgg-lpips": (64, 128, 256, 512, 512)}


class BlurPool(nn.Module):
    """Reflect-pad 2 on every side, then a normalised [1,2,1] binomial depthwise filter with stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = a[:, None] * a[None, :]
        self.register_buffer("filt", (filt / filt.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class _Scaling(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class _Head(nn.Module):
    """LPIPS NetLinLayer: index 0 was a Dropout (identity in eval), index 1 the 1x1 conv without bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(OrderedDict([("0", nn.Identity()), ("1", nn.Conv2d(channels, 1, 1, bias=False))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _vgg_layers(shift_tolerant: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    cin = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if v == "M":
            layers += [nn.MaxPool2d(2, stride=1), BlurPool(cin)] if shift_tolerant else [nn.MaxPool2d(2, stride=2)]
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    return layers


def _alex_layers() -> list[nn.Module]:
    return [
        nn.Conv2d(3, 64, 11, stride=1, padding=2), BlurPool(64), nn.ReLU(),                  # 0-2
        nn.MaxPool2d(3, stride=1), BlurPool(64), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),  # 3-6
        nn.MaxPool2d(3, stride=1), BlurPool(192), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 7-10
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),                                        # 11-12
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),                                        # 13-14
    ]


_SLICES = {"vgg": (0, 4, 10, 18, 26, 34), "alex": (0, 3, 7, 11, 13, 15), "vgg-lpips": (0, 4, 9, 16, 23, 30)}


class _Backbone(nn.Module):
    def __init__(self, net: str):
        super().__init__()
        layers = _alex_layers() if net == "alex" else _vgg_layers(shift_tolerant=net == "vgg")
        bounds = _SLICES[net]
        for k in range(5):
            seq = nn.Sequential(OrderedDict((str(i), layers[i]) for i in range(bounds[k], bounds[k + 1])))
            self.add_module(f"slice{k + 1}", seq)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for k in range(1, 6):
            x = getattr(self, f"slice{k}")(x)
            outs.append(x)
        return outs


class STLPIPS(nn.Module):
    """ST-LPIPS distance. `STLPIPS('vgg')` builds the network (random weights until loaded).

    forward(x, y): images [N, 3, H, W] in [-1, 1] (H, W >= MIN_SIZE) -> distances [N].
    net: 'vgg' or 'alex' (shift-tolerant), or 'vgg-lpips' (vanilla VGG16 LPIPS, for user files).
    """

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in _CHANNELS:
            raise UserError(f"ST-LPIPS network {net!r} is not allowed: use one of {', '.join(VARIANTS)}")
        self.net_name = net
        self.scaling_layer = _Scaling()
        self.net = _Backbone(net)
        for k, ch in enumerate(_CHANNELS[net]):
            self.add_module(f"lin{k}", _Head(ch))
        self.path: Path | None = None
        self.sha1: str | None = None
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ST-LPIPS needs two image batches [N, 3, H, W] of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if min(x.shape[2:]) < MIN_SIZE:
            raise ValueError(f"ST-LPIPS needs images of at least {MIN_SIZE}x{MIN_SIZE}, got {x.shape[2]}x{x.shape[3]}")
        n = x.shape[0]
        feats = self.net(self.scaling_layer(torch.cat([x, y])))
        total = x.new_zeros(n)
        for k, f in enumerate(feats):
            f = f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            diff = (f[:n] - f[n:]).square()
            total = total + getattr(self, f"lin{k}")(diff).mean(dim=(1, 2, 3))
        return total

    def info(self) -> dict:
        return {"name": "ST-LPIPS" if self.net_name in VARIANTS else "LPIPS", "net": self.net_name,
                "path": str(self.path) if self.path else None, "sha1": self.sha1}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], net: str | None = None, device: str = "cpu") -> STLPIPS:
        """Load a weight file strictly. net None: guess from its keys (shift-tolerant VGG/AlexNet, vanilla VGG16 LPIPS)."""
        from gancli.doctor import sha1_of

        path = Path(os.path.expanduser(os.fspath(path)))
        if not path.is_file():
            raise UserError(f"{path}: ST-LPIPS weight file not found; install the package that ships it ({INSTALL_HINT}) "
                            f"or give a .pth state_dict of ST-LPIPS (vgg, alex) or VGG16 LPIPS")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
            raise UserError(f"{path}: not a readable PyTorch state_dict ({type(e).__name__}); give an ST-LPIPS .pth file") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise UserError(f"{path}: not a state_dict of tensors; give an ST-LPIPS .pth file (vgg or alex)")
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        guessed = _guess_net(state)
        if guessed is None:
            if any(k.startswith("lin0.") for k in state) and not any(k.startswith("net.") for k in state):
                raise UserError(f"{path}: holds only the LPIPS linear heads, not the VGG16 backbone; give a full state_dict "
                                f"(net.slice*.* and lin*.model.1.weight), e.g. lpips.LPIPS(net='vgg').state_dict()")
            raise UserError(f"{path}: keys match neither ST-LPIPS (vgg, alex) nor VGG16 LPIPS (first keys: {list(state)[:3]})")
        net = net or guessed
        model = cls(net)
        if "scaling_layer.shift" not in state:  # lpips.LPIPS state_dicts always have it, but be lenient
            state = {**state, **{f"scaling_layer.{k}": v for k, v in model.scaling_layer.state_dict().items()}}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()[0] if str(e) else "mismatch"
            raise UserError(f"{path}: weights do not match the {net} ST-LPIPS network ({first})") from None
        model.path, model.sha1 = path, sha1_of(path)
        return model.to(device)


def _guess_net(state: dict) -> str | None:
    if "net.slice1.1.filt" in state:
        return "alex"
    if "net.slice2.5.filt" in state:
        return "vgg"
    if "net.slice2.5.weight" in state and "net.slice5.28.weight" in state:
        return "vgg-lpips"
    return None


def stlpips_file(variant: str = "vgg") -> Path | None:
    """The weight file stlpips-pytorch ships for `variant`, found without importing the package."""
    from gancli.doctor import package_file

    return package_file("stlpips_pytorch", "weights", "vST0.0", f"{variant}_shift_tolerant.pth")


def load_stlpips(variant: str = "vgg", path: str | os.PathLike[str] | None = None, device: str = "cpu") -> STLPIPS:
    """ST-LPIPS with stlpips-pytorch's weights for `variant` ('vgg' or 'alex'), or a user file `path`."""
    if path is not None:
        return STLPIPS.from_file(path, device=device)
    if variant not in VARIANTS:
        raise UserError(f"--lpips {variant!r}: unknown ST-LPIPS variant; allowed: {', '.join(VARIANTS)}")
    found = stlpips_file(variant)
    if found is None:
        raise UserError(f"ST-LPIPS weights {variant}_shift_tolerant.pth not found: install them with "
                        f"'{INSTALL_HINT}' (its weights are used, not its code), or give a weight file")
    return STLPIPS.from_file(found, net=variant, device=device)
