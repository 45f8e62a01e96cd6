"""Import of official network files: conformance with the official outputs, and safety.

The malicious pickles below are written opcode by opcode (a tiny assembler), so each test controls
exactly which global the file asks for and what the call would do: create a sentinel file. The
loader must refuse with a one-line UserError naming the global, and the sentinel must not appear.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gancli.convert import convert_to_snapshot, detect_format, open_network
from gancli.convert.nvlabs import load_nvlabs_pickle, recipe_from_nvlabs_kwargs
from gancli.convert.safe_pickle import AttrDict, PersistentObject, safe_load
from gancli.errors import UserError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "stylegan2-ada"
PKL = FIXTURES / "sg2-uncond-32-nosrc.pkl"
TOL = dict(rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# A tiny pickle assembler


def lit(value) -> bytes:
    """Opcodes that push `value` (plain data only), without the protocol header and STOP."""
    p = pickletools.optimize(pickle.dumps(value, protocol=3))
    assert p[:2] == b"\x80\x03" and p[-1:] == b"."
    return p[2:-1]


def glob(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()  # GLOBAL: find_class(module, name)


def stack_glob(module: str, name: str) -> bytes:
    return lit(module) + lit(name) + b"\x93"  # STACK_GLOBAL (protocol 4)


def call(fn: bytes, *args: bytes) -> bytes:
    return fn + b"(" + b"".join(args) + b"tR"  # fn(*args) via MARK ... TUPLE REDUCE


def dict_of(**items: bytes) -> bytes:
    return b"}(" + b"".join(lit(k) + v for k, v in items.items()) + b"u"


def program(body: bytes, proto: int = 4) -> bytes:
    return bytes([0x80, proto]) + body + b"."


def write(tmp_path: Path, data: bytes, name: str = "network.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def sentinel(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a payload from the pickle ran"


def test_assembler_builds_pickles_the_standard_loader_runs(tmp_path):
    # Guard against a test that cannot fail: the same bytes, given to the unrestricted pickle
    # module, really do call the global (here a harmless one).
    data = program(call(glob("builtins", "len"), lit("abc")))
    assert pickle.loads(data) == 3
    data = program(call(stack_glob("collections", "OrderedDict"), lit([("a", 1)])))
    assert pickle.loads(data) == collections.OrderedDict(a=1)


# ---------------------------------------------------------------------------------------------------
# Conformance with the official outputs


@pytest.fixture(scope="module")
def expected():
    if not PKL.is_file():
        pytest.skip(f"conformance fixtures not found: {FIXTURES} (the shared test data sits next to the repo)")
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "sg2-uncond-32-expected.safetensors"))


@pytest.fixture(scope="module")
def nets(expected):
    """Our networks built from the official constructor arguments, with the file's weights."""
    from gancli.families.stylegan2 import nets as stylegan2

    recs = load_nvlabs_pickle(PKL)
    G = stylegan2.Generator(**recs["G_ema"].init_kwargs)
    D = stylegan2.Discriminator(**recs["D"].init_kwargs)
    G.load_state_dict(recs["G_ema"].state_dict, strict=True)
    D.load_state_dict(recs["D"].state_dict, strict=True)
    return G.eval().requires_grad_(False), D.eval().requires_grad_(False), recs["G_ema"].init_kwargs, recs["D"].init_kwargs


def _uint8(img: torch.Tensor) -> torch.Tensor:
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def test_records_hold_kwargs_and_official_names(expected):
    recs = load_nvlabs_pickle(PKL)
    assert list(recs) == ["G_ema", "G", "D"]
    g = recs["G_ema"]
    assert g.class_name == "Generator" and recs["D"].class_name == "Discriminator"
    assert g.init_kwargs["mapping_kwargs"] == {"num_layers": 2}
    assert type(g.init_kwargs["mapping_kwargs"]) is dict  # EasyDict -> plain dict
    assert "mapping.w_avg" in g.state_dict and "synthesis.b32.torgb.weight" in g.state_dict
    assert all(isinstance(t, torch.Tensor) and not isinstance(t, torch.nn.Parameter) for t in g.state_dict.values())


@pytest.mark.parametrize("psi, ws_key, img_key", [(1.0, "ws_psi10", "img_psi10"), (0.7, "ws_psi07", "img_psi07")])
def test_generator_from_pickle_matches_official(nets, expected, psi, ws_key, img_key):
    G, _, _, _ = nets
    e = expected
    with torch.no_grad():
        ws = G.mapping(e["z"], e["c"], truncation_psi=psi)
        img = G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(ws, e[ws_key], **TOL)
    torch.testing.assert_close(img, e[img_key], **TOL)
    diff = (_uint8(img).int() - e[f"{img_key}_uint8"].int()).abs()
    assert diff.max() <= 1


def test_generator_from_pickle_noise_none_and_discriminator(nets, expected):
    G, D, _, _ = nets
    e = expected
    with torch.no_grad():
        img = G.synthesis(e["ws_psi10"], noise_mode="none")
        logits = D(e["img_psi10"], e["c"])
    torch.testing.assert_close(img, e["img_psi10_noise_none"], **TOL)
    torch.testing.assert_close(logits, e["d_logits"], **TOL)


def test_converted_snapshot_gives_the_same_images(expected, tmp_path):
    from gancli.models import load_generator

    dest = convert_to_snapshot(PKL, tmp_path / "converted.safetensors")
    loaded = load_generator(dest)
    m = loaded.recipe.model
    assert (m.z_dim, m.w_dim, m.mapping_layers, m.channel_base, m.channel_max) == (64, 64, 2, 2048, 128)
    assert (m.num_fp16_res, m.conv_clamp, m.g_architecture, m.d_architecture) == (0, None, "skip", "resnet")
    assert loaded.recipe.data.resolution == 32
    assert loaded.meta["source_format"] == "nvlabs-stylegan2-ada"
    assert loaded.meta["converted_from"] == PKL.name
    assert (loaded.meta["c_dim"], loaded.meta["img_channels"], loaded.meta["resolution"]) == (0, 3, 32)
    e = expected
    for psi, key in ((1.0, "img_psi10"), (0.7, "img_psi07")):
        with torch.no_grad():
            img = loaded.G(e["z"], e["c"], truncation_psi=psi, noise_mode="const")
        torch.testing.assert_close(img, e[key], **TOL)
        assert (_uint8(img).int() - e[f"{key}_uint8"].int()).abs().max() <= 1

    # open_network reads both kinds of file and gives the same weights.
    assert detect_format(dest) == "gancli-snapshot" and detect_format(PKL) == "nvlabs-pickle"
    mods_snap, recipe_snap, _ = open_network(dest)
    mods_pkl, recipe_pkl, _ = open_network(PKL)
    assert recipe_snap.model == recipe_pkl.model
    for name in ("G_ema", "G", "D"):
        assert set(mods_snap[name]) == set(mods_pkl[name])
        for k, t in mods_pkl[name].items():
            assert torch.equal(mods_snap[name][k], t), (name, k)

    with pytest.raises(UserError, match="already exists"):
        convert_to_snapshot(PKL, dest)
    with pytest.raises(UserError, match="already a gancli snapshot"):
        convert_to_snapshot(dest, tmp_path / "again.safetensors")


def test_truncated_pickle_is_a_user_error(expected, tmp_path):
    data = PKL.read_bytes()
    bad = write(tmp_path, data[: len(data) // 3])
    with pytest.raises(UserError, match=r"network\.pkl: is not a readable network pickle"):
        load_nvlabs_pickle(bad)


# ---------------------------------------------------------------------------------------------------
# Recipe mapping


G_KW = {"z_dim": 64, "c_dim": 0, "w_dim": 64, "img_resolution": 32, "img_channels": 3,
        "mapping_kwargs": {"num_layers": 2}, "synthesis_kwargs": {"channel_base": 2048, "channel_max": 128,
                                                                  "num_fp16_res": 4, "conv_clamp": 256}}
D_KW = {"c_dim": 0, "img_resolution": 32, "img_channels": 3, "channel_base": 2048, "channel_max": 128,
        "num_fp16_res": 4, "conv_clamp": 256, "block_kwargs": {}, "mapping_kwargs": {},
        "epilogue_kwargs": {"mbstd_group_size": 8}}


def test_recipe_from_kwargs_maps_fields_and_official_defaults():
    r = recipe_from_nvlabs_kwargs(G_KW, D_KW, resolution=32, c_dim=0)
    m = r.model
    assert (m.num_fp16_res, m.conv_clamp, m.mbstd_group_size, m.mbstd_num_channels) == (4, 256, 8, 1)
    # Missing arguments take the *official* constructor defaults, not gancli's recipe defaults.
    bare = recipe_from_nvlabs_kwargs({"z_dim": 8, "w_dim": 8}, {}, resolution=16, c_dim=0).model
    assert (bare.num_fp16_res, bare.conv_clamp, bare.mapping_layers, bare.channel_base) == (0, None, 8, 32768)
    # Arguments that change neither weights nor outputs are accepted.
    d = {**D_KW, "block_kwargs": {"freeze_layers": 4}}
    recipe_from_nvlabs_kwargs(G_KW, d, resolution=32, c_dim=0)


@pytest.mark.parametrize(
    "g_extra, d_extra, match",
    [
        ({"mapping_kwargs": {"num_layers": 2, "layer_features": 32}}, {}, "mapping_kwargs.layer_features"),
        ({"synthesis_kwargs": {**G_KW["synthesis_kwargs"], "use_noise": False}}, {}, "synthesis_kwargs.use_noise"),
        ({"mystery": 1}, {}, "mystery"),
        ({}, {"cmap_dim": 32}, "cmap_dim"),
        ({}, {"channel_max": 256}, "different channel_max"),
        ({}, {"epilogue_kwargs": {"mbstd_group_size": None}}, "mbstd_group_size"),
    ],
)
def test_recipe_from_kwargs_refuses_what_it_cannot_express(g_extra, d_extra, match):
    with pytest.raises(UserError, match=match):
        recipe_from_nvlabs_kwargs({**G_KW, **g_extra}, {**D_KW, **d_extra}, resolution=32, c_dim=0)


# ---------------------------------------------------------------------------------------------------
# Safety: malicious pickles


def _payloads(s: str) -> dict[str, tuple[str, str, bytes]]:
    """(module, name, argument opcodes) of calls that would create the sentinel file `s` if run."""
    inner = pickle.dumps(_Touch(s), protocol=2)  # a pickle that runs os.system when loaded
    return {
        "os.system": ("os", "system", lit(f"touch {s}")),
        "posix.system": ("posix", "system", lit(f"touch {s}")),
        "subprocess.Popen": ("subprocess", "Popen", lit(["touch", s])),
        "subprocess.check_call": ("subprocess", "check_call", lit(["touch", s])),
        "builtins.eval": ("builtins", "eval", lit(f"open({s!r}, 'w').close()")),
        "builtins.exec": ("builtins", "exec", lit(f"open({s!r}, 'w').close()")),
        "builtins.open": ("builtins", "open", lit(s) + lit("w")),
        "builtins.__import__": ("builtins", "__import__", lit("os")),
        "builtins.getattr": ("builtins", "getattr", lit("x") + lit("upper")),
        "importlib.import_module": ("importlib", "import_module", lit("os")),
        "pickle.loads": ("pickle", "loads", lit(inner)),
        "torch.load": ("torch", "load", lit(s)),
        "torch._utils._rebuild_tensor": ("torch._utils", "_rebuild_tensor", lit(s)),
    }


class _Touch:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


PAYLOAD_NAMES = list(_payloads("x"))


@pytest.mark.parametrize("blocked", PAYLOAD_NAMES)
@pytest.mark.parametrize("opcode", ["GLOBAL", "STACK_GLOBAL"])
def test_disallowed_globals_are_refused_before_they_run(tmp_path, sentinel, blocked, opcode):
    module, name, args = _payloads(str(sentinel))[blocked]
    fn = glob(module, name) if opcode == "GLOBAL" else stack_glob(module, name)
    # Hidden inside an otherwise plausible network dict.
    path = write(tmp_path, program(dict_of(training_set_kwargs=lit({"resolution": 32}), G_ema=call(fn, args))))
    with pytest.raises(UserError) as info:
        safe_load(path)
    msg = str(info.value)
    assert f"the pickle asks for {blocked}," in msg and "not allowed" in msg
    assert msg.startswith(f"{path}:") and "\n" not in msg


def test_inst_opcode_is_refused(tmp_path, sentinel):
    data = program(b"(" + lit(f"touch {sentinel}") + b"ios\nsystem\n", proto=2)  # INST
    with pytest.raises(UserError, match=r"asks for os\.system"):
        safe_load(write(tmp_path, data))


def test_reduce_class_payload_is_refused(tmp_path, sentinel):
    data = pickle.dumps({"G_ema": _Touch(str(sentinel))}, protocol=4)
    with pytest.raises(UserError, match=r"asks for (posix|nt)\.system"):
        load_nvlabs_pickle(write(tmp_path, data))


def test_payload_nested_in_a_tensor_rebuild_is_refused(tmp_path, sentinel):
    storage_arg = call(glob("os", "system"), lit(f"touch {sentinel}"))
    tensor = call(glob("torch._utils", "_rebuild_tensor_v2"), storage_arg, lit(0), lit((1,)), lit((1,)),
                  lit(False), call(glob("collections", "OrderedDict")))
    param = call(glob("torch._utils", "_rebuild_parameter"), tensor, lit(True), call(glob("collections", "OrderedDict")))
    meta = dict_of(type=lit("class"), version=lit(6), module_src=lit(""), class_name=lit("Generator"),
                   state=dict_of(_parameters=dict_of(weight=param)))
    data = program(dict_of(G_ema=call(glob("torch_utils.persistence", "_reconstruct_persistent_obj"), meta)))
    with pytest.raises(UserError, match=r"asks for os\.system"):
        load_nvlabs_pickle(write(tmp_path, data))


def test_malicious_storage_blob_is_refused_by_the_weights_only_loader(tmp_path, sentinel):
    buf = io.BytesIO()
    torch.save(_Touch(str(sentinel)), buf, _use_new_zipfile_serialization=False)  # legacy format, as official
    storage = call(glob("torch.storage", "_load_from_bytes"), lit(buf.getvalue()))
    tensor = call(glob("torch._utils", "_rebuild_tensor_v2"), storage, lit(0), lit((1,)), lit((1,)),
                  lit(False), call(glob("collections", "OrderedDict")))
    with pytest.raises(UserError) as info:
        safe_load(write(tmp_path, program(dict_of(w=tensor))))
    msg = str(info.value)
    assert "refusing to load" in msg and ("posix.system" in msg or "nt.system" in msg), msg


def test_module_source_is_never_executed(tmp_path, sentinel):
    src = f"open({str(sentinel)!r}, 'w').close()\nclass Generator: pass\n"
    kwargs = call(glob("dnnlib.util", "EasyDict"), lit([("z_dim", 4)]))
    meta = dict_of(type=lit("class"), version=lit(6), module_src=lit(src), class_name=lit("Generator"),
                   state=dict_of(_init_args=lit(()), _init_kwargs=kwargs, _parameters=lit({}), _modules=lit({})))
    obj = call(glob("torch_utils.persistence", "_reconstruct_persistent_obj"), meta)
    path = write(tmp_path, program(dict_of(G_ema=obj)))
    loaded = safe_load(path)
    g = loaded["G_ema"]
    assert isinstance(g, PersistentObject) and g.class_name == "Generator"
    assert "module_src" not in vars(g) and src not in repr(vars(g))
    assert isinstance(g.state["_init_kwargs"], AttrDict) and g.state["_init_kwargs"].z_dim == 4
    # The record alone builds nothing: converting it fails cleanly (it has no weights), still nothing runs.
    with pytest.raises(UserError, match="G_ema"):
        open_network(path)


def test_persistent_ids_are_refused(tmp_path):
    data = program(lit("storage") + b"Q")  # BINPERSID
    with pytest.raises(UserError, match="persistent id"):
        safe_load(write(tmp_path, data))


def test_allowed_numpy_reconstructors_of_numpy_1_and_2(tmp_path):
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        dtype = call(glob("numpy", "dtype"), lit("f8"), lit(False), lit(True))
        data = program(call(glob(mod, "scalar"), dtype, lit(np.float64(0.25).tobytes())))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no numpy.core deprecation warning either
            value = safe_load(write(tmp_path, data, f"{mod}.pkl"))
        assert value == 0.25 and isinstance(value, np.float64)


def test_other_file_kinds_are_pointed_at_the_right_loader(tmp_path):
    zipped = tmp_path / "model.pt"
    torch.save({"g_ema": {"w": torch.zeros(2)}}, zipped)
    with pytest.raises(UserError, match="torch.save zip"):
        safe_load(zipped)
    with pytest.raises(UserError, match="torch.save zip"):
        open_network(zipped)
    text = write(tmp_path, b"hello", "notes.pkl")
    with pytest.raises(UserError, match="is not a network"):
        open_network(text)
    with pytest.raises(UserError, match="no such file"):
        open_network(tmp_path / "missing.pkl")



def test_cli_convert_and_sample_official_pickle(cli, tmp_path):
    """`gancli sample network.pkl` gives the official uint8 images; `gancli convert` writes a snapshot
    that renders identically, with a self-check image beside it, and never overwrites."""
    from helpers import assert_user_error
    from PIL import Image
    from safetensors.torch import load_file

    pkl = FIXTURES / "sg2-uncond-32-nosrc.pkl"
    if not pkl.is_file():
        pytest.skip(f"conformance fixtures not found: {FIXTURES}")
    expected = load_file(str(FIXTURES / "sg2-uncond-32-expected.safetensors"))
    seeds = [int(s) for s in expected["seeds"]]
    assert cli("sample", pkl, "--seeds", ",".join(map(str, seeds)), "--trunc", "0.7", "--outdir", tmp_path / "s").code == 0
    for i, seed in enumerate(seeds):
        ours = np.asarray(Image.open(tmp_path / "s" / f"seed{seed:04d}.png")).astype(int)
        assert np.abs(ours - expected["img_psi07_uint8"][i].numpy().astype(int)).max() <= 1
    out = tmp_path / "model.safetensors"
    result = cli("convert", pkl, "-o", out, "--seeds", "0-3")
    assert result.code == 0, result
    assert "identical" in result.out and (tmp_path / "model-selfcheck.png").is_file()
    assert cli("sample", out, "--seeds", "85", "--outdir", tmp_path / "c").code == 0
    assert cli("sample", pkl, "--seeds", "85", "--outdir", tmp_path / "p").code == 0
    assert (tmp_path / "c" / "seed0085.png").read_bytes() == (tmp_path / "p" / "seed0085.png").read_bytes()
    info = cli("info", pkl)
    assert info.code == 0 and "official StyleGAN2-ADA pickle" in info.out and "G_ema" in info.out
    before = out.read_bytes()
    assert_user_error(cli("convert", pkl, "-o", out), "model")
    assert out.read_bytes() == before


def test_stylegan3_kwargs_are_named_as_such():
    from gancli.convert.nvlabs import recipe_from_nvlabs_kwargs

    g_kwargs = {"z_dim": 512, "w_dim": 512, "c_dim": 0, "img_resolution": 256, "img_channels": 3,
                "mapping_kwargs": {"num_layers": 2},
                "synthesis_kwargs": {"channel_base": 32768, "channel_max": 512, "magnitude_ema_beta": 0.999,
                                     "conv_kernel": 1, "use_radial_filters": True}}
    with pytest.raises(UserError, match="StyleGAN3 .alias-free. network.*StyleGAN2 and StyleGAN2-ADA networks only"):
        recipe_from_nvlabs_kwargs(g_kwargs, None, 256, 0, origin="sg3.pkl")
