"""The command line: help texts, version, dry runs, import cost, and commands still to come."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gancli import __version__

COMMANDS = ["train", "sample", "mix", "interpolate", "noise", "truncate", "project", "evaluate", "convert", "dataset", "info",
            "doctor", "recipes"]


def test_top_level_help_lists_every_command(cli):
    result = cli("--help")
    assert result.code == 0
    for command in COMMANDS:
        assert command in result.out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(cli, command):
    result = cli(command, "--help")
    assert result.code == 0, result
    assert "Usage: gancli " + command in " ".join(result.out.split())
    if command not in ("recipes",):
        assert "Examples" in result.out


def test_version(cli):
    result = cli("--version")
    assert result.code == 0 and result.out.strip() == f"gancli {__version__}"


def test_help_does_not_import_torch():
    """`gancli --help` must be instant: the CLI module may not import torch (or numpy) at import time."""
    code = "import sys; from gancli.cli import main; main(['--help']); print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_console_script_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "gancli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_dry_run_prints_resolved_recipe_and_plan(cli, tmp_path):
    result = cli("train", "quickstart", "--dry-run", "--batch", "16", "--kimg", "5", "--set", "loss.r1_gamma=0.5",
                 "--outdir", tmp_path / "runs")
    assert result.code == 0, result
    text = " ".join(result.out.split())
    assert "batch: 16" in text and "total_kimg: 5.0" in text and "r1_gamma: 0.5" in text
    assert "312 steps of batch 16" in text  # 5000 // 16
    assert "dry run" in text
    assert not (tmp_path / "runs").exists(), "a dry run writes nothing"


def test_flag_values_are_validated(cli):
    from helpers import assert_user_error

    assert_user_error(cli("train", "quickstart", "--dry-run", "--ops", "fast"), "ops", "'auto'")
    assert_user_error(cli("train", "quickstart", "--dry-run", "--resolution", "100"), "data.resolution", "power of two")


def test_unknown_option_is_a_usage_error(cli):
    result = cli("train", "quickstart", "--bogus")
    assert result.code == 2
    assert "--bogus" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("args", [["sample", "missing.safetensors"], ["mix", "missing.safetensors", "--rows", "1", "--cols", "2"],
                                  ["interpolate", "missing.safetensors", "--seeds", "1,2"], ["noise", "missing.safetensors"],
                                  ["truncate", "missing.safetensors"], ["info", "missing.safetensors"],
                                  ["evaluate", "missing.safetensors"], ["project", "missing.safetensors", "face.png"]])
def test_a_missing_input_fails_before_torch_is_imported(args, tmp_path):
    """A typo in a path answers in a fraction of a second (it used to take 2-3 s of imports first)."""
    code = ("import sys; from gancli.cli import main; rc = main(sys.argv[1:]); "
            "print(rc, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.strip().splitlines()[-1] == "2 False", done
    assert done.stderr.strip() == "error: missing.safetensors: no such file"
