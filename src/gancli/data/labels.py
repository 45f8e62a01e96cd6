"""Class labels: NVlabs `dataset.json`, explicit JSON/CSV label files, and class-per-subfolder.

A label is an integer class index >= 0. Every image must have exactly one and every entry must name
an image; otherwise UserError names the label file and the first offending entry.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re

import numpy as np

from gancli.errors import UserError

_INT = re.compile(r"^[+-]?\d+$")


def _short(x, limit: int = 80) -> str:
    s = json.dumps(x) if not isinstance(x, str) else repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _norm(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def parse_json(data: bytes, where: str) -> object:
    """Parse JSON bytes; UserError naming `where` with the line and column of a syntax error."""
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise UserError(
            f'{where} is not UTF-8 text ({e.reason} at byte {e.start}): it must be JSON like {{"labels": [["00000/img00000000.png", 0], ...]}}'
        ) from None
    except json.JSONDecodeError as e:
        raise UserError(
            f"{where} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}): fix it or delete it"
        ) from None


def read_dataset_json(data: bytes, where: str) -> dict:
    """Parse a dataset's `dataset.json`; it must be a JSON object (keys 'labels', 'gancli', ...)."""
    meta = parse_json(data, where)
    if not isinstance(meta, dict):
        raise UserError(
            f'{where} must be a JSON object like {{"labels": [[path, class], ...]}}, not {type(meta).__name__}'
        )
    return meta


def labels_from_entries(entries, where: str) -> dict[str, int] | None:
    """NVlabs 'labels' value -> {relative path: class}; None for null/absent. UserError on bad shape."""
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise UserError(
            f"{where}: 'labels' must be a list of [relative_path, integer class] pairs or null, not {type(entries).__name__}"
        )
    mapping: dict[str, int] = {}
    for i, entry in enumerate(entries):
        ok = isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)
        if not ok:
            raise UserError(
                f"{where}: label entry #{i} {_short(entry)} is not a [relative_path, integer class] pair"
            )
        name, value = _norm(entry[0]), entry[1]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(
                f"{where}: label entry #{i} for '{entry[0]}' has class {_short(value)}; classes must be integers >= 0"
            )
        if name in mapping:
            raise UserError(f"{where}: image '{entry[0]}' has more than one label entry (#{i} repeats it)")
        mapping[name] = value
    return mapping


def read_label_file(path: str) -> dict[str, int]:
    """An explicit label file: JSON ({path: class}, [[path, class], ...] or NVlabs {"labels": ...}) or CSV.

    CSV rows are `relative_path,class`; a first row whose class column is not an integer is a header.
    """
    display = os.fspath(path)
    full = os.path.expanduser(display)
    if not os.path.isfile(full):
        raise UserError(
            f"label file '{display}' not found: give a .json or .csv file mapping relative image paths to classes, or 'dirs'"
        )
    ext = os.path.splitext(full)[1].lower()
    if ext not in (".json", ".csv"):
        raise UserError(
            f"label file '{display}' must be .json or .csv (mapping relative image paths to integer classes), or use 'dirs'"
        )
    with open(full, "rb") as f:
        data = f.read()
    if ext == ".json":
        obj = parse_json(data, f"label file '{display}'")
        if isinstance(obj, dict) and "labels" in obj and not all(isinstance(v, int) for v in obj.values()):
            obj = obj["labels"]
        if isinstance(obj, dict):
            obj = [[k, v] for k, v in obj.items()]
        mapping = labels_from_entries(obj, f"label file '{display}'")
        if not mapping:
            raise UserError(
                f"label file '{display}' holds no labels: it must map relative image paths to integer classes"
            )
        return mapping
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"label file '{display}' is not UTF-8 text") from None
    mapping: dict[str, int] = {}
    for i, row in enumerate(csv.reader(io.StringIO(text))):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            raise UserError(
                f"label file '{display}' line {i + 1}: {_short(','.join(row))} must be two columns: relative_path,class"
            )
        name, value = _norm(row[0].strip()), row[1].strip()
        if not _INT.match(value) or int(value) < 0:
            if i == 0 and not mapping:
                continue  # header row
            raise UserError(
                f"label file '{display}' line {i + 1}: class {value!r} for '{name}' must be an integer >= 0"
            )
        if name in mapping:
            raise UserError(f"label file '{display}' line {i + 1}: image '{name}' is labelled twice")
        mapping[name] = int(value)
    if not mapping:
        raise UserError(f"label file '{display}' holds no labels: rows must be relative_path,class")
    return mapping


def match_labels(mapping: dict[str, int], names: list[str], where: str, source_display: str) -> np.ndarray:
    """Class index per image, in `names` order (int64). Every image needs a label and vice versa."""
    name_set = set(names)
    for name in mapping:
        if name not in name_set:
            raise UserError(
                f"{where} has a label for '{name}', which is not an image of '{source_display}': fix or remove that entry"
            )
    out = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        if name not in mapping:
            raise UserError(
                f"{where} has no label for image '{name}': every image needs a [relative_path, class] entry"
            )
        out[i] = mapping[name]
    return out


def labels_from_dirs(names: list[str], source_display: str) -> tuple[dict[str, int], list[str]]:
    """Class per image from its top-level subfolder (classes = sorted subfolder names)."""
    for name in names:
        if "/" not in name:
            raise UserError(
                f"labels 'dirs': image '{name}' in '{source_display}' is not inside a class subfolder; put every image in a subfolder named after its class"
            )
    classes = sorted({n.split("/", 1)[0] for n in names})
    index = {c: i for i, c in enumerate(classes)}
    return {n: index[n.split("/", 1)[0]] for n in names}, classes


def one_hot(classes: np.ndarray, c_dim: int) -> np.ndarray:
    out = np.zeros((len(classes), c_dim), dtype=np.float32)
    out[np.arange(len(classes)), classes] = 1
    return out
