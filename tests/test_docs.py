"""Docs stay true to the code."""

from __future__ import annotations

from pathlib import Path

from gancli.recipe import builtin_recipes, schema_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_reference_matches_schema():
    text = (ROOT / "docs" / "recipes.md").read_text()
    assert schema_markdown() in text, "regenerate the table in docs/recipes.md from gancli.recipe.schema_markdown()"


def test_every_builtin_recipe_is_documented():
    text = (ROOT / "docs" / "recipes.md").read_text()
    for name in builtin_recipes():
        assert f"`{name}`" in text, name


def test_readme_shows_the_two_commands_and_credits_twemoji():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert "Twemoji" in text and "CC-BY 4.0" in text
