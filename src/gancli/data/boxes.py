"""Object boxes from Pascal VOC XML annotations, for `gancli dataset --boxes` (the format of Stanford
Dogs, the data of Kaggle's "Generative Dog Images" competition: Annotation/<breed>/<image id>, an XML
file without extension, beside Images/<breed>/<image id>.jpg).

Only the direct `<object>` children of `<annotation>` count; the `<part>` boxes nested inside an object
(VOC person layout) are not objects of their own. Coordinates are VOC's 1-based inclusive pixels; a
box is turned into the 0-based half-open crop (xmin - 1, ymin - 1, xmax, ymax), clipped to the image
when it reaches past an edge, and refused when nothing of it is inside.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass


class AnnotationProblem(Exception):
    """A missing or bad annotation: one line naming the file and what is wrong."""


@dataclass(frozen=True)
class Box:
    name: str  # the object's class name (<name>)
    left: int  # 0-based, half-open: the crop is image.crop((left, top, right, bottom))
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def _number(node, tag: str, where: str) -> float:
    child = node.find(tag)
    if child is None or child.text is None:
        raise AnnotationProblem(f"{where}: <{tag}> is missing")
    try:
        return float(child.text.strip())
    except ValueError:
        raise AnnotationProblem(f"{where}: <{tag}> is not a number ({child.text.strip()!r})") from None


def parse_voc(data: bytes, where: str, image_size: tuple[int, int] | None = None) -> list[Box]:
    """The boxes of one VOC annotation. `image_size` (width, height) of the decoded image wins over the
    file's <size> (which some annotations get wrong or leave at 0)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise AnnotationProblem(f"{where}: not valid XML ({e}); the file is truncated or not a VOC annotation") from None
    if root.tag != "annotation":
        raise AnnotationProblem(f"{where}: the root element is <{root.tag}>, not <annotation>")
    if image_size is None:
        size = root.find("size")
        if size is None:
            raise AnnotationProblem(f"{where}: <size> is missing")
        image_size = (int(_number(size, "width", where)), int(_number(size, "height", where)))
    width, height = image_size
    boxes = []
    for k, obj in enumerate(root.findall("object")):
        label = f"{where}: object {k + 1}"
        name = obj.findtext("name")
        if not name or not name.strip():
            raise AnnotationProblem(f"{label}: <name> is missing")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise AnnotationProblem(f"{label} ({name.strip()}): <bndbox> is missing")
        xmin, ymin, xmax, ymax = (_number(bnd, t, f"{label} ({name.strip()})") for t in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise AnnotationProblem(f"{label} ({name.strip()}): the box is inverted ({xmin:g},{ymin:g})-({xmax:g},{ymax:g})")
        left, top = max(0, int(round(xmin)) - 1), max(0, int(round(ymin)) - 1)
        right, bottom = min(width, int(round(xmax))), min(height, int(round(ymax)))
        if right <= left or bottom <= top:
            raise AnnotationProblem(f"{label} ({name.strip()}): the box ({xmin:g},{ymin:g})-({xmax:g},{ymax:g}) lies "
                                    f"outside the {width}x{height} image")
        boxes.append(Box(name.strip(), left, top, right, bottom))
    if not boxes:
        raise AnnotationProblem(f"{where}: has no <object>")
    return boxes


def pad_box(box: Box, pad: float, width: int, height: int) -> Box:
    """The box enlarged by `pad` of its width (left and right) and height (top and bottom), clipped."""
    dx, dy = int(round(box.width * pad)), int(round(box.height * pad))
    return Box(box.name, max(0, box.left - dx), max(0, box.top - dy), min(width, box.right + dx),
               min(height, box.bottom + dy))


def keep_aspect(box: Box, min_aspect: float | None, max_aspect: float | None) -> bool:
    """Whether height / width lies within [min_aspect, max_aspect] (None: no bound)."""
    aspect = box.height / box.width
    return (min_aspect is None or aspect >= min_aspect) and (max_aspect is None or aspect <= max_aspect)


def annotation_path(annotations: str, name: str) -> str | None:
    """The annotation of image `name` (its path relative to the source): ANNOTATIONS/<name without
    extension>, with or without '.xml'; None when there is none."""
    stem = os.path.splitext(name)[0]
    for candidate in (stem, stem + ".xml"):
        path = os.path.join(annotations, *candidate.split("/"))
        if os.path.isfile(path):
            return path
    return None
