"""Seeds, psi lists, interpolation paths and grids: the pure pieces of the latent-space commands."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gancli.errors import UserError
from gancli.explore import parse_psi, path_points, slerp
from gancli.latent import parse_seeds, z_from_seeds
from gancli.render import grid_shape, make_grid, to_uint8


def test_parse_seeds_ranges_and_lists():
    assert parse_seeds("0-3,42") == [0, 1, 2, 3, 42]
    assert parse_seeds("7") == [7]
    assert parse_seeds(" 5 , 1-2 ") == [5, 1, 2]


@pytest.mark.parametrize("text, fragment", [("", "no seeds"), ("a-b", "'a-b'"), ("5-1", "backwards"),
                                            ("x", "'x'"), ("99999999999", "outside")])
def test_parse_seeds_errors(text, fragment):
    with pytest.raises(UserError, match=fragment):
        parse_seeds(text)


def test_z_from_seeds_is_the_official_convention_and_batch_independent():
    z = z_from_seeds([3, 85], 64)
    assert torch.equal(z[1], torch.from_numpy(np.random.RandomState(85).randn(64)).float())
    assert torch.equal(z_from_seeds([85], 64)[0], z[1])


def test_parse_psi():
    assert parse_psi("-1:1:5") == pytest.approx([-1, -0.5, 0, 0.5, 1])
    assert parse_psi("1,0.7") == [1.0, 0.7]
    for bad in ("1:2", "a,b", "0:1:0", ""):
        with pytest.raises(UserError, match="--psi"):
            parse_psi(bad)


def test_slerp_keeps_norm_and_hits_endpoints():
    a, b = torch.randn(2, 16, dtype=torch.float64)
    b = b / b.norm() * a.norm()
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    assert slerp(a, b, 0.3).norm() == pytest.approx(float(a.norm()))
    assert torch.allclose(slerp(a, a.clone(), 0.5), a)  # parallel vectors: no NaN


@pytest.mark.parametrize("kind", ["linear", "slerp", "cubic"])
def test_path_passes_through_keyframes(kind):
    keys = torch.randn(3, 8, dtype=torch.float64)
    path = path_points(keys, 4, kind, loop=False)
    assert path.shape == (9, 8)
    for i in range(3):
        assert torch.allclose(path[4 * i], keys[i])
    looped = path_points(keys, 4, kind, loop=True)
    assert looped.shape == (12, 8) and torch.allclose(looped[0], keys[0])


def test_linear_path_midpoint():
    keys = torch.tensor([[0.0, 0.0], [2.0, 4.0]])
    assert torch.allclose(path_points(keys, 2, "linear", loop=False)[1], torch.tensor([1.0, 2.0]))


def test_to_uint8_uses_official_rounding():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 2, 3).repeat(1, 3, 1, 1)
    got = to_uint8(x)[0, :, :, 0].reshape(-1)
    expected = np.clip(np.array([-1.0, -0.5, 0.0, 0.999, 1.0, 2.0]) * 127.5 + 128, 0, 255).astype(np.uint8)
    assert np.array_equal(got, expected)


def test_grid_shape_and_layout():
    assert grid_shape(32, "4x8") == (4, 8)
    assert grid_shape(10) == (3, 4)
    with pytest.raises(UserError, match="cannot hold"):
        grid_shape(10, "2x2")
    with pytest.raises(UserError, match="ROWSxCOLS"):
        grid_shape(4, "four")
    images = np.stack([np.full((2, 2, 3), i, np.uint8) for i in range(5)])
    grid = make_grid(images, 2, 3)
    assert grid.shape == (4, 6, 3)
    assert grid[0, 4, 0] == 2 and grid[2, 0, 0] == 3 and grid[3, 5, 0] == 255  # row-major, empty cell white
