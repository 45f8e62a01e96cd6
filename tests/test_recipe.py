"""Recipes: schema, inheritance, overrides and strict validation (each bad input is one clear line)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import assert_user_error

from gancli.errors import UserError
from gancli.recipe import Recipe, builtin_recipes, load_recipe, parse_override


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_every_builtin_recipe_validates():
    names = builtin_recipes()
    assert {"quickstart", "stylegan2-ffhq", "stylegan2-ffhq256", "stylegan2-cifar"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.name == name
        assert recipe.description and recipe.source, f"{name} must say what it reproduces and where from"


def test_base_inheritance_merges_sections(tmp_path):
    write(tmp_path / "parent.yaml", """
        name: parent
        train: {batch: 64, g_lr: 0.001}
        model: {z_dim: 256}
    """)
    child = write(tmp_path / "child.yaml", """
        base: parent.yaml
        train: {batch: 8}
    """)
    recipe = load_recipe(str(child))
    assert recipe.train.batch == 8  # child wins
    assert recipe.train.g_lr == 0.001  # parent kept
    assert recipe.model.z_dim == 256
    assert recipe.name == "parent"  # inherited name


def test_builtin_base_by_name(tmp_path):
    child = write(tmp_path / "mine.yaml", "base: stylegan2-ffhq256\ndata: {resolution: 128}\n")
    recipe = load_recipe(str(child))
    assert recipe.data.resolution == 128 and recipe.model.channel_base == 16384 and recipe.train.batch == 64


def test_overrides_are_typed_and_validated():
    recipe = load_recipe("quickstart", [parse_override("train.batch=16"), parse_override("train.betas=[0.5, 0.9]")])
    assert recipe.train.batch == 16 and recipe.train.betas == [0.5, 0.9]
    assert recipe.train.g_lr == pytest.approx(0.0025)
    # ints are accepted where floats are expected, and converted
    assert isinstance(load_recipe("quickstart", [parse_override("train.g_lr=1")]).train.g_lr, float)


def test_round_trip_through_dict():
    recipe = load_recipe("stylegan2-cifar")
    again = Recipe.from_dict(recipe.to_dict(), origin="ckpt")
    assert again == recipe


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("train: {bacth: 3}\n", ["train.bacth", "did you mean train.batch"]),
        ("trian: {batch: 3}\n", ["trian", "did you mean train"]),
        ("train: {batch: many}\n", ["train.batch", "expected an integer", "'many'"]),
        ("train: {batch: 2.5}\n", ["train.batch", "expected an integer"]),
        ("data: {xflip: 'yes please'}\n", ["data.xflip", "true or false"]),
        ("model: {g_architecture: unet}\n", ["model.g_architecture", "'skip'", "'resnet'"]),
        ("data: {resolution: 48}\n", ["data.resolution", "power of two"]),
        ("train: {betas: [0.9]}\n", ["train.betas", "two numbers"]),
        ("train: {g_lr: -1}\n", ["train.g_lr", "> 0"]),
        ("train: 5\n", ["train", "expected a mapping"]),
        ("ops: fast\n", ["ops", "'auto'", "'cuda'", "'ref'"]),
        ("loss: {style_mixing_prob: 2}\n", ["loss.style_mixing_prob", "[0, 1]"]),
        ("metrics: {names: [fidd]}\n", ["metrics.names", "fidd"]),
        ("train: {batch: 30}\ndistributed: {gpus: 4}\n", ["train.batch", "divisible"]),
        ("format: 7\n", ["format 7"]),
    ],
)
def test_bad_recipe_values(tmp_path, cli, text, fragments):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(UserError) as info:
        load_recipe(str(path))
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "bad.yaml" in str(info.value)
    assert_user_error(cli("train", path, "--dry-run"), "bad.yaml", *fragments)


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("", ["empty"]),
        ("- a\n- b\n", ["must be a YAML mapping"]),
        ("train: {batch: [1, 2\n", ["invalid YAML", "line"]),
        ("base: nowhere.yaml\n", ["base", "nowhere.yaml", "not found"]),
        ("base: 12\n", ["base", "file name"]),
    ],
)
def test_bad_recipe_files(tmp_path, cli, text, fragments):
    path = write(tmp_path / "broken.yaml", text)
    assert_user_error(cli("train", path, "--dry-run"), "broken.yaml", *fragments)


def test_base_cycle(tmp_path, cli):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    assert_user_error(cli("train", tmp_path / "a.yaml", "--dry-run"), "loops", "a.yaml -> b.yaml -> a.yaml")


def test_missing_recipe_and_wrong_kind(tmp_path, cli):
    assert_user_error(cli("train", tmp_path / "nope.yaml", "--dry-run"), "nope.yaml", "not found", "quickstart")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert_user_error(cli("train", folder, "--dry-run"), "folder.yaml", "directory")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    assert_user_error(cli("train", binary, "--dry-run"), "bin.yaml", "not a text file")


def test_bad_set_syntax(cli):
    assert_user_error(cli("train", "quickstart", "--set", "train.batch", "--dry-run"), "--set train.batch", "KEY=VALUE")
    assert_user_error(cli("train", "quickstart", "--set", "train..batch=3", "--dry-run"), "KEY=VALUE")
    assert_user_error(cli("train", "quickstart", "--set", "train.batch.x=3", "--dry-run"), "train.batch is not a section")
    assert_user_error(cli("train", "quickstart", "--set", "train.bacth=8", "--dry-run"), "--set train.bacth=8",
                      "did you mean train.batch")


@pytest.mark.parametrize("resolution, gpus, batch, group, base, lr, gamma, ema", [
    (256, 1, 16, 4, 16384, 0.0025, 0.8192, 5.0),
    (256, 8, 64, 4, 16384, 0.0025, 0.2048, 20.0),
    (1024, 8, 32, 4, 32768, 0.002, 6.5536, 10.0),
    (32, 2, 64, 4, 16384, 0.0025, 0.0032, 20.0),
])
def test_auto_recipe_follows_official_rules(resolution, gpus, batch, group, base, lr, gamma, ema):
    recipe = load_recipe("stylegan2-auto", [parse_override(f"data.resolution={resolution}"),
                                            parse_override(f"distributed.gpus={gpus}")])
    assert recipe.train.batch == batch and recipe.model.mbstd_group_size == group
    assert recipe.model.channel_base == base and recipe.model.mapping_layers == 2
    assert recipe.train.g_lr == pytest.approx(lr) and recipe.loss.r1_gamma == pytest.approx(gamma)
    assert recipe.train.ema_kimg == pytest.approx(ema) and recipe.train.ema_rampup == 0.05


def test_auto_recipe_explicit_override_wins():
    recipe = load_recipe("stylegan2-auto", [parse_override("train.batch=8")])
    assert recipe.train.batch == 8


def test_embedded_recipes_tolerate_retired_keys():
    stored = load_recipe("quickstart").to_dict()
    stored["metrics"]["every_kimg"] = 5  # a key an older gancli wrote
    with pytest.raises(UserError, match="metrics.every_kimg"):
        Recipe.from_dict(stored, origin="ckpt")
    assert Recipe.from_dict(stored, origin="ckpt", strict=False) == load_recipe("quickstart")
    stored["train"]["batch"] = "many"  # types are still checked
    with pytest.raises(UserError, match="train.batch"):
        Recipe.from_dict(stored, origin="ckpt", strict=False)


def test_dry_run_augment_line_says_how_p_moves(cli):
    ada = cli("train", "quickstart-ada", "--dry-run")
    assert ada.code == 0 and "augment    ada (bgc, target 0.6), p 0 adaptive (0 to 1 in 100 kimg)" in ada.out
    fixed = cli("train", "quickstart-ada", "--dry-run", "--set", "augment.adaptive=false", "--set", "augment.p=0.2")
    assert "augment    ada (bgc, target 0.6), p 0.2 fixed" in fixed.out
    assert "augment    none" in cli("train", "quickstart", "--dry-run").out
