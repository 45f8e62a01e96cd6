"""Package layout that pyproject.toml cannot say on its own: the top-level `recipes/` folder (where a
checkout user runs `gancli train recipes/stylegan2-ffhq.yaml`) is shipped as the package
`gancli.recipes`, so a wheel or sdist install has the built-in recipes too. Everything else is in
pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=find_packages("src") + ["gancli.recipes"],
    package_dir={"": "src", "gancli.recipes": "recipes"},
    package_data={"gancli.recipes": ["*.yaml"]},
)
