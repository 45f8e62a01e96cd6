"""VQ-VAE-2 (Razavi et al. 2019), model.kind vqvae2: a family with stages, no D and no z (docs/vqvae2.md).

`model.stage: 1` trains the two-level VQ-VAE; `model.stage: 2` trains the top and bottom priors over
the codes of a stage-1 network given with `--init`. Checkpoints hold one module, `vqvae2` (the
VQ-VAE, plus the priors from stage 2). In the commands: `sample --seeds` (a seed fixes every draw of
both priors; `--trunc` is the sampling temperature), `truncate` (a temperature sweep), `mix` (top
codes of the row image with the bottom codes of the column image) and `project IMAGE` (encode:
codes, reconstruction, PSNR).
"""

from __future__ import annotations

from gancli.errors import UserError
from gancli.families.base import Family
from gancli.families.vqvae2.config import VQVAE2Loss, VQVAE2Model, VQVAE2Train


class VQVAE2Family(Family):
    name = "vqvae2"
    title = "VQ-VAE-2"
    kinds = ("vqvae2",)
    model_config = VQVAE2Model
    loss_config = VQVAE2Loss
    train_config = VQVAE2Train
    capabilities = frozenset({"seeds", "encode", "trunc_temperature"})
    modules = ("vqvae2",)
    own_metrics = {"recon": "reconstruction MSE (pixels in [-1, 1]) and PSNR (uint8, dB, mean per image)",
                   "codes": "codebook usage (share of codes used) and perplexity per level",
                   "nll": "prior NLL in bits per code, per level and together (stage 2; uniform: log2 n_embed)"}
    inference_module = "vqvae2"

    def validate(self, recipe, where: str) -> None:
        super().validate(recipe, where)
        res = recipe.data.resolution
        if res < 16 or res % 8:
            raise UserError(f"{where}data.resolution: VQ-VAE-2 needs a multiple of 8 of at least 16 (top codes at "
                            f"1/8, bottom at 1/4), got {res}")
        if recipe.data.use_labels:
            raise UserError(f"{where}data.use_labels: the VQ-VAE-2 family is unconditional here; use data.use_labels: false")
        if recipe.train.dead_code_threshold and recipe.distributed.gpus > 1:
            raise UserError(f"{where}train.dead_code_threshold: dead-code restarts run in one process only "
                            f"(distributed.gpus is {recipe.distributed.gpus})")
        if recipe.model.stage == 1 and recipe.metrics.names:
            raise UserError(f"{where}metrics.names: a stage-1 VQ-VAE-2 does not generate images from seeds (no priors "
                            "yet); measure stage 1 with gancli evaluate --metrics recon,codes")
        if recipe.model.stage == 2 and recipe.train.dead_code_threshold:
            raise UserError(f"{where}train.dead_code_threshold: applies to stage 1 (stage 2 keeps the codebooks frozen)")

    def plan(self, recipe) -> dict[str, str]:
        m, t, res = recipe.model, recipe.train, recipe.data.resolution
        levels = f"top {res // 8}x{res // 8}, bottom {res // 4}x{res // 4}, codebooks {m.n_embed} x {m.embed_dim}"
        if m.stage == 1:
            restart = (f"dead codes restarted below an EMA count of {t.dead_code_threshold:g}"
                       if t.dead_code_threshold else "no dead-code restarts")
            return {
                "model": f"vqvae2 stage 1: two-level VQ-VAE ({levels}, EMA decay {m.codebook_decay:g}), "
                         f"{m.channels} channels, {m.res_blocks} residual blocks",
                "optimizer": f"Adam lr {t.lr:g}, betas {t.betas}; codebooks by EMA; {restart}",
                "loss": f"pixel MSE + {recipe.loss.beta:g} x commitment (straight-through gradients)",
            }
        return {
            "model": f"vqvae2 stage 2: gated PixelCNN priors over the codes of a frozen stage-1 VQ-VAE ({levels}); "
                     f"top: {m.prior_layers} layers, {m.prior_attention} causal attention blocks; bottom: "
                     f"{m.prior_layers} layers conditioned on the top codes; {m.prior_channels} channels",
            "optimizer": f"Adam lr {t.lr:g}, betas {t.betas}, dropout {m.prior_dropout:g}",
            "loss": "cross-entropy of the codes (logged as bits per code; uniform: "
                    f"log2 {m.n_embed} = {__import__('math').log2(m.n_embed):.2f})",
            "stage 1": "from --init RUN (its VQ-VAE weights, frozen); the training set's codes are extracted once into codes.npz in this run",
        }

    def requires_init(self, recipe):
        if recipe.model.stage == 2:
            return (f"{recipe.name}: stage 2 trains priors over the codes of a trained stage-1 VQ-VAE: give it with "
                    f"--init STAGE1_RUN (e.g. gancli train {recipe.name} --init runs/vqvae2-emoji-00000)")
        return None

    def adopt_model(self, recipe_model: dict, network_model: dict) -> dict:
        """Stage 2 from a stage-1 file: the file's VQ-VAE sizes, the recipe's stage and prior sizes."""
        own = {k: v for k, v in recipe_model.items() if k == "stage" or k.startswith("prior_") or k == "cond_res_blocks"}
        return {**network_model, **own}

    def build_generator(self, recipe, c_dim: int, img_channels: int = 3):
        from gancli.families.vqvae2.steps import build

        return build(recipe, img_channels)

    def training(self, trainer):
        from gancli.families.vqvae2.steps import Stage1Training, Stage2Training

        return (Stage1Training if trainer.recipe.model.stage == 1 else Stage2Training)(trainer)

    # ----------------------------------------------------------------------------------------------
    # Seeds -> images: --trunc is the priors' sampling temperature (1: the learned distribution; 0: argmax).

    def check_trunc(self, G, trunc: float | None, cutoff: int | None) -> None:
        if cutoff is not None:
            raise UserError("--trunc-cutoff: a vqvae2 network has no layers of W (--trunc is its sampling temperature)")
        if trunc is not None and not 0 <= trunc <= 10:
            raise UserError(f"--trunc {trunc}: for vqvae2 it is the sampling temperature, which must be in [0, 10]")

    def default_truncations(self) -> list[float]:
        return [0.0, 0.5, 0.8, 1.0, 1.2]

    def generate(self, G, seeds, *, trunc=None, cutoff=None, c=None, noise_mode="const", batch=1, progress=False):
        _require_priors(G, "generate images from seeds")
        return super().generate(G, seeds, trunc=trunc, cutoff=cutoff, c=c, noise_mode=noise_mode, batch=batch,
                                progress=progress)

    def from_z(self, G, z, c, *, trunc=None, cutoff=None, noise_mode="const", noise_seeds=None):
        return G(z, temperature=1.0 if trunc is None else float(trunc))

    # ----------------------------------------------------------------------------------------------
    # The commands' model-specific paths (capability `encode`)

    def mix_grid(self, loaded, rows: list[int], cols: list[int], *, trunc: float | None = None):
        """mix: the top codes of each row seed's sample with the bottom codes of each column seed's
        sample (global structure from the row, local detail from the column) as one uint8 grid."""
        from gancli.families.vqvae2.explore import mix_grid

        _require_priors(loaded.G, "mix samples")
        return mix_grid(self, loaded.G, rows, cols, temperature=1.0 if trunc is None else trunc)

    def interpolation_frames(self, loaded, seeds, *, frames, space, kind, loop, psi, class_idx, classes):
        """interpolate: the seeds' samples' code vectors (both levels) along the path, quantized to the
        nearest codes and decoded at every frame."""
        from gancli.families.vqvae2.explore import code_walk

        if space not in (None, "codes"):
            raise UserError(f"--space {space}: a vqvae2 network walks through its code vectors (--space codes)")
        if class_idx is not None or classes:
            raise UserError("--class/--classes: a vqvae2 generator takes no class labels")
        if len(seeds) < 2:
            raise UserError("--seeds: an interpolation needs at least two seeds, e.g. --seeds 1,5")
        _require_priors(loaded.G, "sample the keyframes")
        self.check_trunc(loaded.G, psi, None)
        return code_walk(self, loaded.G, seeds, frames=frames, curve=kind, loop=loop, temperature=psi)

    def evaluate_own(self, loaded, names, *, data_source, num_real, batch):
        from gancli.data import open_dataset
        from gancli.families.vqvae2.explore import code_metrics

        if "nll" in names:
            _require_priors(loaded.G, "measure the NLL of codes with")
        d = loaded.recipe.data
        dataset = open_dataset(data_source or d.source, loaded.G.img_resolution, allow_resize=d.allow_resize)
        n = len(dataset) if num_real is None else min(int(num_real), len(dataset))
        if n < 1:
            raise UserError(f"--num-real {num_real}: needs at least one image")
        return code_metrics(loaded.G, dataset, n, names, batch=max(1, batch))

    def encode_images(self, loaded, images):
        """project: uint8 images NHWC [N, R, R, 3] -> {'top', 'bottom' codes, 'recon' uint8, 'psnr' [N]}."""
        from gancli.families.vqvae2.explore import encode_images

        return encode_images(loaded.G, images)


def _require_priors(G, what: str) -> None:
    if getattr(G, "top_prior", None) is None:
        raise UserError(f"a vqvae2 stage-1 network has no priors to {what}; train stage 2 from it "
                        "(gancli train vqvae2-emoji-prior --init RUN)")


FAMILY = VQVAE2Family()
