"""The class-conditional ResNet family: SNGAN, SAGAN and BigGAN (model.kind sngan, sagan, biggan; docs/biggan.md).

Networks (spectral norm, conditional batch norm, self-attention, projection D) in `nets.py`, the
training step (several D steps per G step, hinge or BCE, orthogonal regularization, BigGAN's EMA and
standing statistics) in `steps.py`, the recipe sections in `config.py`.
"""

from __future__ import annotations

from gancli.errors import UserError
from gancli.families.base import Family, require_doubling
from gancli.families.resnet.config import ResNetLoss, ResNetModel, ResNetTrain, bottom_width_of

# Values of --trunc from this one on leave z untouched in practice: no truncation.
NO_TRUNCATION = 6.0


class ResNetFamily(Family):
    name = "resnet"
    title = "ResNet"
    kinds = ("sngan", "sagan", "biggan")
    model_config = ResNetModel
    loss_config = ResNetLoss
    train_config = ResNetTrain
    capabilities = frozenset({"seeds", "class", "trunc_resample"})

    def check_resolution(self, recipe, where: str) -> None:
        """G grows from a bottom_width map by doubling and D ends in global sum pooling (any size): the
        resolution must be b * 2^k, b in 4..7 (derived; 48 = 6 * 2^3) or b = model.bottom_width (given)."""
        m, res = recipe.model, recipe.data.resolution
        if m.bottom_width is None:
            require_doubling(res, where, "a ResNet generator (model.bottom_width null: derived)")
            return
        sizes = [m.bottom_width * 2**k for k in range(1, 16) if m.bottom_width * 2**k <= max(res, 2 * m.bottom_width)]
        if res not in sizes:
            raise UserError(f"{where}model.bottom_width: {m.bottom_width} does not double up to data.resolution {res} "
                            f"(the resolution must be bottom_width * 2^k: {', '.join(map(str, sizes[-3:]))}, "
                            f"{2 * sizes[-1]}, ...; or leave model.bottom_width null to derive it)")

    def validate(self, recipe, where: str) -> None:
        super().validate(recipe, where)
        m, res = recipe.model, recipe.data.resolution  # G grows from bottom_width by doubling
        bottom = bottom_width_of(m, res)
        sizes = [bottom * 2**k for k in range(1, 16) if bottom * 2**k <= res]
        bad = [r for r in m.attn_res if r not in sizes]
        if bad:
            raise UserError(f"{where}model.attn_res: no generator block outputs {bad[0]} px (they output "
                            f"{', '.join(map(str, sizes))} px)")
        from gancli.train.schedules import check_relativistic_rounds

        check_relativistic_rounds(recipe, where)

    def plan(self, recipe) -> dict[str, str]:
        from gancli.train.schedules import optimizer_line, steps_line

        m, loss, t = recipe.model, recipe.loss, recipe.train
        if t.ema_decay == 0:
            ema = "no EMA (G_ema is a copy of G)"
        elif t.ema_decay is not None:
            ema = f"EMA decay {t.ema_decay:g} from step {t.ema_start}"
        else:
            ema = f"EMA half-life {t.ema_kimg:g} kimg"
        return {
            "model": (f"{m.kind}: ResNet G {self._widths(recipe)}, z {m.z_dim}"
                      + (f", shared embedding {m.shared_dim}" if m.shared_dim else "") + (", hierarchical z" if m.hier else "")
                      + (f", attention at {m.attn_res}" if m.attn_res else "") + {(True, True): ", SN in G and D", (False, True): ", SN in D", (True, False): ", SN in G",
                         (False, False): ", no SN"}[(m.g_sn, m.d_sn)]),
            "steps": steps_line(t, loss.kind),
            "optimizer": optimizer_line(t, ema),
            "loss": f"{loss.kind}" + (f", orthogonal reg {loss.ortho_reg:g}" if loss.ortho_reg else "")
                    + ("" if loss.kind in ("hinge", "bce") else f" ({loss.describe()})"),
        }

    @staticmethod
    def _widths(recipe) -> str:
        """The dry-run's layout of the networks that will be built, e.g. '3 up-blocks from 6x6, channels
        512-256-128-64 / D 5 blocks, channels 64-128-256-512-1024' (sngan-stl10)."""
        from gancli.families.resnet.nets import d_layout, g_channel_mults

        m, res = recipe.model, recipe.data.resolution
        bottom = bottom_width_of(m, res)
        g = m.g_ch_mult or g_channel_mults(res, bottom)
        d = m.d_ch_mult or d_layout(res, bottom)[0]
        return (f"{len(g) - 1} up-blocks from {bottom}x{bottom}, channels {'-'.join(str(m.g_ch * x) for x in g)} / "
                f"D {len(d)} blocks, channels {'-'.join(str(m.d_ch * x) for x in d)}")

    def build_networks(self, recipe, c_dim: int, img_channels: int = 3):
        from gancli.families.resnet.steps import build_networks

        return build_networks(recipe, c_dim, img_channels)

    def build_generator(self, recipe, c_dim: int, img_channels: int = 3):
        from gancli.families.resnet.steps import build_networks

        return build_networks(recipe, c_dim, img_channels)[0]

    def training(self, trainer):
        from gancli.families.resnet.steps import ResNetTraining

        return ResNetTraining(trainer)

    # ----------------------------------------------------------------------------------------------
    # Seeds -> images. --trunc is BigGAN's truncation trick (Brock et al. 2019, Sec. 3.1): entries of z
    # beyond the threshold are redrawn from the seed's own stream.

    def check_trunc(self, G, trunc: float | None, cutoff: int | None) -> None:
        if cutoff is not None:
            raise UserError("--trunc-cutoff: this generator has no mapping network (no layers of W to choose)")
        if trunc is not None and trunc <= 0:
            raise UserError(f"--trunc {trunc}: this generator truncates by resampling z beyond a threshold, which must be > 0")

    def default_truncations(self) -> list[float]:
        return [2.0, 1.0, 0.5, 0.04]  # BigGAN Fig. 2(a): little truncation down to almost z = 0

    def latents(self, seeds, z_dim, device, trunc=None):
        from gancli.latent import z_from_seeds

        threshold = None if trunc is None or trunc >= NO_TRUNCATION else trunc
        return z_from_seeds(seeds, z_dim, device, threshold=threshold)

    def from_z(self, G, z, c, *, trunc=None, cutoff=None, noise_mode="const", noise_seeds=None):
        return G(z, c)


FAMILY = ResNetFamily()
