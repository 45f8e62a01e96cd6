"""`gancli dataset --boxes`: the Pascal VOC parser against hand-made XML (nested parts, a truncated
file, boxes outside the image), padding and aspect limits, and the crops, labels and skips of the command."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from helpers import assert_user_error
from PIL import Image

from gancli.data.boxes import AnnotationProblem, Box, keep_aspect, pad_box, parse_voc


def voc(*objects: str, size=(40, 30)) -> bytes:
    return (f"<annotation><filename>x.jpg</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>").encode()


def obj(name: str, xmin, ymin, xmax, ymax, extra: str = "") -> str:
    return (f"<object><name>{name}</name><pose>Unspecified</pose><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>{extra}</object>")


def test_voc_boxes_are_one_based_inclusive_and_nested_parts_are_not_objects():
    part = "<part><name>head</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></part>"
    boxes = parse_voc(voc(obj("dog", 1, 1, 10, 20, part), obj("cat", 11, 5, 40, 30)), "a.xml")
    assert boxes == [Box("dog", 0, 0, 10, 20), Box("cat", 10, 4, 40, 30)]
    assert boxes[0].width == 10 and boxes[0].height == 20


def test_voc_boxes_outside_the_image_are_clipped_or_refused():
    (box,) = parse_voc(voc(obj("dog", 30, 20, 55, 45)), "a.xml")  # reaches past the 40x30 image
    assert box == Box("dog", 29, 19, 40, 30)
    (box,) = parse_voc(voc(obj("dog", 30, 20, 55, 45)), "a.xml", image_size=(100, 100))  # the real size wins
    assert box == Box("dog", 29, 19, 55, 45)
    with pytest.raises(AnnotationProblem, match="lies outside the 40x30 image"):
        parse_voc(voc(obj("dog", 50, 40, 60, 45)), "a.xml")
    with pytest.raises(AnnotationProblem, match="inverted"):
        parse_voc(voc(obj("dog", 10, 10, 5, 20)), "a.xml")


@pytest.mark.parametrize("data,message", [
    (voc(obj("dog", 1, 1, 10, 10))[:-30], "not valid XML"),  # truncated
    (b"<html></html>", "not <annotation>"),
    (voc(), "has no <object>"),
    (voc("<object><name>dog</name></object>"), "<bndbox> is missing"),
    (voc(obj("dog", 1, "a", 10, 10)), "<ymin> is not a number"),
    (voc(obj("", 1, 1, 10, 10)), "<name> is missing"),
])
def test_bad_annotations_say_what_is_wrong_in_one_line(data, message):
    with pytest.raises(AnnotationProblem, match=message) as e:
        parse_voc(data, "Annotation/x")
    assert str(e.value).startswith("Annotation/x") and "\n" not in str(e.value)


def test_box_padding_and_aspect_limits():
    box = Box("dog", 10, 10, 30, 20)  # 20 wide, 10 high
    assert pad_box(box, 0.1, 100, 100) == Box("dog", 8, 9, 32, 21)
    assert pad_box(box, 1.0, 40, 25) == Box("dog", 0, 0, 40, 25)  # clipped to the image
    assert keep_aspect(box, 0.2, 4) and not keep_aspect(box, 0.6, None) and not keep_aspect(box, None, 0.4)


@pytest.fixture
def dogs(tmp_path):
    """Images/<breed>/<id>.png with a coloured object per box, and Annotation/<breed>/<id> (VOC, no extension)."""
    images, notes = tmp_path / "Images", tmp_path / "Annotation"
    specs = {"n01-beagle/a": [("beagle", (2, 2, 20, 20), (255, 0, 0)), ("collie", (22, 10, 38, 28), (0, 0, 255))],
             "n02-pug/b": [("pug", (5, 5, 36, 9), (0, 255, 0))],  # 32 x 5: extreme aspect
             "n02-pug/c": [("pug", (10, 5, 30, 25), (0, 255, 0))]}
    for key, objects in specs.items():
        (images / key).parent.mkdir(parents=True, exist_ok=True)
        (notes / key).parent.mkdir(parents=True, exist_ok=True)
        img = np.full((30, 40, 3), 255, np.uint8)
        for _, (x0, y0, x1, y1), colour in objects:
            img[y0 - 1:y1, x0 - 1:x1] = colour  # VOC boxes are 1-based, inclusive
        Image.fromarray(img).save(images / f"{key}.png")
        (notes / key).write_bytes(voc(*(obj(n, *b) for n, b, _ in objects)))
    return tmp_path


def _zip(path):
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("dataset.json"))
        crops = {n: np.asarray(Image.open(zf.open(n))) for n in sorted(zf.namelist()) if n.endswith(".png")}
    return meta, crops


def test_dataset_boxes_crops_each_object_with_its_class(cli, dogs):
    out = dogs / "dogs.zip"
    result = cli("dataset", dogs / "Images", out, "--resolution", "8", "--boxes", dogs / "Annotation",
                 "--labels", "boxes", "--max-aspect", "4", "--min-aspect", "0.2", "--transform", "stretch")
    assert result.code == 0, result
    assert "3 crops" in result.out and "1 boxes skipped for their aspect" in result.out
    meta, crops = _zip(out)
    assert meta["gancli"]["class_names"] == ["beagle", "collie", "pug"]
    assert [label for _, label in meta["labels"]] == [0, 1, 2]  # a: beagle, collie (two objects); c: pug
    colours = [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    for (name, _), colour in zip(meta["labels"], colours):
        assert np.abs(crops[name].reshape(-1, 3).mean(0) - colour).max() < 8  # the crop is the object


def test_dataset_box_pad_includes_the_surroundings(cli, dogs):
    out = dogs / "padded.zip"
    assert cli("dataset", dogs / "Images", out, "--resolution", "16", "--boxes", dogs / "Annotation",
               "--box-pad", "0.5", "--transform", "stretch", "--max-images", "1").code == 0
    _, crops = _zip(out)
    first = next(iter(crops.values()))
    assert (first == 255).all(axis=2).any()  # white background around the padded beagle


def test_dataset_boxes_missing_annotation_errors_or_is_skipped_with_one_line(cli, dogs):
    (dogs / "Annotation" / "n02-pug" / "c").unlink()
    (dogs / "Annotation" / "n02-pug" / "b").write_bytes(b"<annotation><object>")  # truncated
    result = cli("dataset", dogs / "Images", dogs / "x.zip", "--resolution", "8", "--boxes", dogs / "Annotation")
    assert_user_error(result, "n02-pug/b", "not valid XML", "--skip-bad")
    assert not (dogs / "x.zip").exists()
    result = cli("dataset", dogs / "Images", dogs / "y.zip", "--resolution", "8", "--boxes", dogs / "Annotation",
                 "--skip-bad")
    assert result.code == 0, result
    skipped = [line for line in result.out.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 2 and any("no annotation for image 'n02-pug/c.png'" in s for s in skipped)
    assert "2 crops" in result.out
    assert_user_error(cli("dataset", dogs / "Images", dogs / "z.zip", "--resolution", "8", "--labels", "boxes"),
                      "labels 'boxes'", "--boxes")
    assert_user_error(cli("dataset", dogs / "Images", dogs / "z.zip", "--resolution", "8", "--box-pad", "0.1"),
                      "--box-pad")
