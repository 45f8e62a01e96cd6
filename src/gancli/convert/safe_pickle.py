"""A restricted unpickler for official StyleGAN2-ADA network pickles. It never runs code from the file.

The official training loop writes `network-snapshot-*.pkl` with `pickle.dump`. Its networks are
"persistent classes": each module pickles as `torch_utils.persistence._reconstruct_persistent_obj(meta)`,
where `meta` holds the class name, the Python source of the module that defines the class
(`module_src`) and the instance `__dict__` (`state`). The official loader executes `module_src`;
this one never does. It builds a plain `PersistentObject(class_name, version, state)` record and
leaves the source text untouched (it is not even kept).

How the safety works
--------------------
A pickle can only call what `Unpickler.find_class` hands it, and the unpickler asks for a global
(GLOBAL, STACK_GLOBAL, INST, OBJ, EXT opcodes) before any REDUCE / NEWOBJ / BUILD that would call
it. `find_class` below answers from an explicit allow-list of harmless constructors and refuses
everything else with a one-line `UserError`, so a payload such as `os.system(...)` stops at the
lookup, before anything runs. The allowed torch rebuild functions are our own re-implementations
that check their arguments; the storage blobs inside (`torch.storage._load_from_bytes`, a legacy
`torch.save` file per storage) are read with `torch.load(weights_only=True)`, torch's own
restricted loader, and any refusal there becomes the same kind of `UserError`.

Persistent ids (PERSID / BINPERSID) are not used by these pickles and are refused.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gancli.errors import UserError

__all__ = ["PersistentObject", "AttrDict", "SafeUnpickler", "safe_load", "sniff_format"]

_NOT_ALLOWED = "which is not allowed (gancli never runs code from network files)"


@dataclass
class PersistentObject:
    """An official persistent-class instance, as data: its class name and its `__dict__`.

    The embedded module source is ignored (never executed, not kept).
    """

    class_name: str
    version: int
    state: dict[str, Any] = field(repr=False)


class AttrDict(dict):
    """Stands in for `dnnlib.util.EasyDict` (a dict with attribute access); only data, no behaviour."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def sniff_format(path: str | os.PathLike[str]) -> str:
    """'pickle', 'torch-zip', 'safetensors' or 'unknown', from the first bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "torch-zip"
    # safetensors first: its 8-byte header length may begin with 0x80 like a pickle (length = 128 mod 256)
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    if head[:1] == b"\x80" and len(head) >= 2 and 2 <= head[1] <= 5:
        return "pickle"
    return "unknown"


def _blocked_name_in(message: str) -> str | None:
    """The global torch's weights-only loader refused, from its error message."""
    m = re.search(r"GLOBAL\s+([A-Za-z_][\w.]*)", message)
    return m.group(1) if m else None


class SafeUnpickler(pickle.Unpickler):
    """Reads official StyleGAN2-ADA network pickles; refuses every global outside the allow-list."""

    def __init__(self, file: Any, source: str):
        super().__init__(file)
        self.source = source
        self._allowed: dict[tuple[str, str], Any] = self._allow_list()

    # -- the allow-list --------------------------------------------------------------------------

    def _allow_list(self) -> dict[tuple[str, str], Any]:
        import numpy as np
        from numpy._core import multiarray as np_multiarray

        allowed: dict[tuple[str, str], Any] = {
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): self._reconstruct_persistent_obj,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch.storage", "_load_from_bytes"): self._load_from_bytes,
            ("dnnlib.util", "EasyDict"): AttrDict,
            ("dnnlib", "EasyDict"): AttrDict,
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("numpy", "dtype"): np.dtype,
            ("numpy", "ndarray"): np.ndarray,
            # Sets pickle as REDUCE(builtins.set, [items]) below protocol 4 (released networks).
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
        }
        # numpy 1.x writes numpy.core.multiarray, numpy 2.x numpy._core.multiarray: same functions.
        for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed[(mod, "scalar")] = np_multiarray.scalar
            allowed[(mod, "_reconstruct")] = np_multiarray._reconstruct
        return allowed

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        if found is None:
            raise UserError(f"{self.source}: refusing to load: the pickle asks for {module}.{name}, {_NOT_ALLOWED}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UserError(
            f"{self.source}: refusing to load: the pickle uses a persistent id ({str(pid)[:60]!r}), "
            "which network pickles never do"
        )

    # -- reconstructors (ours, checking their arguments) -----------------------------------------

    def _bad(self, what: str) -> UserError:
        return UserError(f"{self.source}: is not a valid network pickle ({what})")

    def _reconstruct_persistent_obj(self, meta: Any) -> PersistentObject:
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise self._bad("a persistent object without class metadata")
        class_name, state = meta.get("class_name"), meta.get("state")
        if not isinstance(class_name, str) or not isinstance(state, dict):
            raise self._bad("a persistent object without class name or state")
        version = meta.get("version", 0)
        # meta['module_src'] (Python source) is deliberately ignored: never executed, never kept.
        return PersistentObject(class_name=class_name, version=int(version) if isinstance(version, int) else 0,
                                state=dict(state))

    def _load_from_bytes(self, data: Any) -> Any:
        import torch

        if not isinstance(data, (bytes, bytearray)):
            raise self._bad("a storage blob that is not bytes")
        try:
            storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - torch refuses in several ways; all mean "bad file"
            blocked = _blocked_name_in(str(e))
            if blocked:
                raise UserError(
                    f"{self.source}: refusing to load: a tensor storage in the pickle asks for {blocked}, {_NOT_ALLOWED}"
                ) from None
            reason = (str(e).strip().splitlines() or [type(e).__name__])[-1][:160]
            raise self._bad(f"a tensor storage could not be read: {reason}") from None
        if not isinstance(storage, torch.storage.TypedStorage):
            raise self._bad(f"a tensor storage blob holds {type(storage).__name__}, not a storage")
        return storage

    def _rebuild_tensor_v2(
        self, storage: Any, storage_offset: Any, size: Any, stride: Any,
        requires_grad: Any = False, backward_hooks: Any = None, metadata: Any = None,
    ) -> Any:
        import torch

        def ints(x: Any) -> bool:
            return isinstance(x, tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in x)

        if not isinstance(storage, torch.storage.TypedStorage):
            raise self._bad("a tensor whose storage is not a tensor storage")
        if not (isinstance(storage_offset, int) and storage_offset >= 0 and ints(size) and ints(stride)
                and len(size) == len(stride)):
            raise self._bad("a tensor with malformed shape, stride or offset")
        if backward_hooks:
            raise self._bad("a tensor with backward hooks")
        numel = 1
        for s in size:
            numel *= s
        extent = storage_offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if numel else 0
        if extent > storage.size():
            raise self._bad("a tensor that reaches past the end of its storage")
        t = torch.empty((0,), dtype=storage.dtype)
        t.set_(storage.untyped(), storage_offset, size, stride)
        return t

    def _rebuild_parameter(self, data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
        import torch

        if not isinstance(data, torch.Tensor):
            raise self._bad("a parameter that is not a tensor")
        if backward_hooks:
            raise self._bad("a parameter with backward hooks")
        return data  # a plain tensor: gancli copies it into its own modules


def safe_load(path: str | os.PathLike[str]) -> Any:
    """Unpickle an official network file without running any code from it.

    Raises UserError (one line naming the file) for a refused global, a torch zip file, a
    safetensors file, or anything that is not a readable pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    fmt = sniff_format(path)
    if fmt == "torch-zip":
        raise UserError(
            f"{path}: is a torch.save zip file, not an NVlabs network pickle; a gancli training state "
            "(state-*.pt) is read by `gancli train --resume` (weights-only), and other projects' torch.save "
            "checkpoints (e.g. rosinality) cannot be imported yet"
        )
    if fmt == "safetensors":
        raise UserError(f"{path}: is a safetensors file, not a network pickle; open gancli snapshots with "
                        "`gancli.convert.open_network` or `gancli.models.load_generator`")
    if fmt != "pickle":
        raise UserError(f"{path}: is not a network pickle (allowed: official StyleGAN2-ADA .pkl files)")
    import warnings

    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation chatter from torch
            return SafeUnpickler(f, str(path)).load()
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"{path}: is too large to load into memory") from None
    except Exception as e:  # noqa: BLE001 - truncated or malformed pickles fail in many ways
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: is not a readable network pickle ({type(e).__name__}: {reason})") from None


