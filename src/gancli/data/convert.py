"""`convert_dataset`: any folder, zip or 'emoji' -> an NVlabs-layout training zip.

Output layout (readable by gancli and by NVlabs' StyleGAN2-ADA / StyleGAN3 tools):

    00000/img00000000.png ... 00000/img00000999.png, 00001/img00001000.png, ...   (1000 per folder)
    dataset.json = {"labels": [["00000/img00000000.png", 3], ...] or null,
                    "gancli": {"source", "resolution", "transform", "resize_filter", "count",
                               "num_classes", "class_names", "skipped", "version", "date"}}

Every image becomes RGB (alpha composited onto white, greyscale and palettes expanded, EXIF rotation
applied), is made square (`center-crop`, `pad` with white, `stretch`, or `center-crop-wide`: a centred wide
crop letterboxed in black) and resized to the
resolution with the chosen filter. Members are stored uncompressed with a fixed timestamp, so the
same input gives the same PNG members. The zip is written to a temporary file beside `dest` and
moved into place only when complete; an existing `dest` is never overwritten.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import time
import zipfile
from dataclasses import dataclass
from functools import partial

from PIL import Image, ImageOps

from gancli.data import emoji as _emoji
from gancli.data import labels as _labels
from gancli.data.images import (
    RESAMPLE,
    ImageProblem,
    ImageTooLarge,
    SourceSpec,
    check_image_header,
    check_resolution,
    close_zip_handles,
    composite_rgb,
    open_source,
    parallel_map,
    read_source_bytes,
)
from gancli.errors import UserError
from gancli.fileio import atomic_path

TRANSFORMS = ("center-crop", "pad", "stretch", "center-crop-wide")
RESIZE_FILTERS = tuple(RESAMPLE)
IMAGES_PER_FOLDER = 1000
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def archive_name(index: int) -> str:
    """Name of the index-th image in a training zip: `00000/img00000000.png`."""
    return f"{index // IMAGES_PER_FOLDER:05d}/img{index:08d}.png"


@dataclass(frozen=True)
class _Settings:
    resolution: int
    transform: str
    resize_filter: str
    boxes: BoxOptions | None = None
    band: int | None = None  # center-crop-wide: the height of the image band in the square


@dataclass(frozen=True)
class BoxOptions:
    """`gancli dataset --boxes`: one crop per annotated object (Pascal VOC XML, gancli.data.boxes)."""

    annotations: str  # folder of the annotations, laid out as the images (Stanford Dogs: Annotation/)
    pad: float = 0.0  # enlarge each box by this fraction of its width and height on each side
    min_aspect: float | None = None  # skip boxes with height / width below this
    max_aspect: float | None = None  # skip boxes with height / width above this


def make_square(img: Image.Image, transform: str) -> Image.Image:
    """RGB image -> square: centre-crop the largest centred square, or pad with white (centred)."""
    w, h = img.size
    if w == h or transform == "stretch":
        return img
    if transform == "center-crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return img.crop((left, top, left + s, top + s))
    s = max(w, h)
    canvas = Image.new("RGB", (s, s), (255, 255, 255))
    canvas.paste(img, ((s - w) // 2, (s - h) // 2))
    return canvas


def wide_band(img: Image.Image, resolution: int, band: int, resize_filter: str) -> Image.Image:
    """`center-crop-wide`: the largest centred crop of aspect resolution:band, resized to resolution x
    band and placed in the middle of a black resolution x resolution square (letterboxed: the layout
    of wide subjects such as LSUN cars in NVlabs' datasets, 512 x 384 in 512 x 512)."""
    w, h = img.size
    if w * band > h * resolution:  # wider than the band: crop the sides
        cw, ch = round(h * resolution / band), h
    else:  # taller: crop top and bottom
        cw, ch = w, max(1, round(w * band / resolution))
    left, top = (w - cw) // 2, (h - ch) // 2
    img = img.crop((left, top, left + cw, top + ch))
    if img.size != (resolution, band):
        img = img.resize((resolution, band), RESAMPLE[resize_filter])
    canvas = Image.new("RGB", (resolution, resolution), (0, 0, 0))
    canvas.paste(img, (0, (resolution - band) // 2))
    return canvas


def prepare_image(
    img: Image.Image, resolution: int, transform: str = "center-crop", resize_filter: str = "lanczos",
    band: int | None = None,
) -> Image.Image:
    """The converter's per-image pipeline on a decoded PIL image -> RGB `resolution` x `resolution`.

    band: the image band's height for `center-crop-wide` (default 3/4 of the resolution: 4:3)."""
    img = composite_rgb(img)
    if transform == "center-crop-wide":
        return wide_band(img, resolution, band or resolution * 3 // 4, resize_filter)
    img = make_square(img, transform)
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), RESAMPLE[resize_filter])
    return img


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _convert_one(spec: SourceSpec, settings: _Settings, name: str) -> bytes | list | ImageProblem:
    """Worker: read, decode and prepare one image; return PNG bytes (with --boxes: a list of (PNG bytes,
    box name) per kept box, and the number of boxes skipped for their aspect) or the problem."""
    label = spec.describe(name)
    try:
        data = read_source_bytes(spec, name)
    except ImageTooLarge as e:
        return ImageProblem(f"image '{label}' is too large ({e}); delete it or pass --skip-bad")
    except OSError as e:
        return ImageProblem(f"cannot read image '{label}' ({e.strerror or e}): check its permissions")
    try:
        img = Image.open(io.BytesIO(data))
        too_big = check_image_header(img)
        if too_big:
            return ImageProblem(f"image '{label}' is too large ({too_big}); delete it or pass --skip-bad")
        if img.format == "JPEG" and min(img.size) > 4 * settings.resolution and settings.boxes is None:
            # DCT-domain downscaling (fast), still leaving >= 2x the target for the resize filter.
            img.draft("RGB", (2 * settings.resolution, 2 * settings.resolution))
        img.load()
    except Exception as e:
        reason = str(e).strip() or type(e).__name__
        return ImageProblem(
            f"cannot read image '{label}' ({reason}): it is corrupt, truncated or not an image; delete it or pass --skip-bad"
        )
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block: keep the stored orientation
        pass
    if settings.boxes is not None:
        return _crops(img, settings, name)
    return _png(prepare_image(img, settings.resolution, settings.transform, settings.resize_filter, settings.band))


def _crops(img: Image.Image, settings: _Settings, name: str) -> tuple[list, int] | ImageProblem:
    from gancli.data.boxes import AnnotationProblem, keep_aspect, pad_box, parse_voc

    opt = settings.boxes
    path = annotation_path_of(opt, name)
    try:
        with open(path, "rb") as f:
            boxes = parse_voc(f.read(), path, image_size=img.size)
    except AnnotationProblem as e:
        return ImageProblem(f"{e}; fix it or pass --skip-bad")
    out, skipped = [], 0
    for box in boxes:
        box = pad_box(box, opt.pad, *img.size)
        if not keep_aspect(box, opt.min_aspect, opt.max_aspect):
            skipped += 1
            continue
        crop = img.crop((box.left, box.top, box.right, box.bottom))
        out.append((_png(prepare_image(crop, settings.resolution, settings.transform, settings.resize_filter,
                                       settings.band)), box.name))
    return out, skipped


def annotation_path_of(opt: BoxOptions, name: str) -> str:
    from gancli.data.boxes import annotation_path

    return annotation_path(opt.annotations, name) or os.path.join(opt.annotations, os.path.splitext(name)[0])


def _member(name: str) -> zipfile.ZipInfo:
    """A zip entry with a fixed date (reproducible output) and ordinary rw-r--r-- permissions."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.external_attr = 0o644 << 16
    return info


def _validate_dest(dest: str) -> str:
    display = os.fspath(dest)
    path = os.path.abspath(os.path.expanduser(display))
    if not path.lower().endswith(".zip"):
        raise UserError(
            f"output '{display}' must end in .zip: the converter writes NVlabs-layout training zips"
        )
    if os.path.lexists(path):
        raise UserError(f"output '{display}' exists; choose another path or delete it")
    parent = os.path.dirname(path)
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise UserError(f"output '{display}': '{parent}' is not a folder")
    return path


def _progress(enabled: bool, total: int, description: str):
    """A progress bar with rate and ETA on a terminal; a no-op otherwise."""
    from gancli.progress import image_progress

    return image_progress(total, description, enabled)


def _check_annotations(opt: BoxOptions, names: list[str], classes, skip_bad: bool, skipped: list[str],
                       want_classes: bool):
    """Read every image's annotation (without the images: the box names and whether it parses). A
    missing or bad one stops with one line, or with skip_bad is listed in `skipped` and its image left
    out. Returns (names, classes, box class index by name or None)."""
    from gancli.data.boxes import AnnotationProblem, parse_voc

    kept, kept_classes, box_names = [], [], set()
    for i, name in enumerate(names):
        path = annotation_path_of(opt, name)
        try:
            if not os.path.isfile(path):
                raise AnnotationProblem(f"{path}: no annotation for image '{name}'")
            with open(path, "rb") as f:
                boxes = parse_voc(f.read(), path, image_size=(1 << 30, 1 << 30))  # sizes checked on the image
        except AnnotationProblem as e:
            if not skip_bad:
                raise UserError(f"{e}; fix it or pass --skip-bad") from None
            skipped.append(f"{e}")
            continue
        box_names.update(b.name for b in boxes)
        kept.append(name)
        if classes is not None:
            kept_classes.append(classes[i])
    if not kept:
        raise UserError(f"none of the {len(names)} images has a usable annotation in '{opt.annotations}' "
                        f"({skipped[0] if skipped else 'no images'})")
    import numpy as np

    box_classes = {n: k for k, n in enumerate(sorted(box_names))} if want_classes else None
    return kept, (np.asarray(kept_classes) if classes is not None else None), box_classes


def convert_dataset(
    source: str,
    dest: str,
    *,
    resolution: int,
    transform: str = "center-crop",
    resize_filter: str = "lanczos",
    labels: str | None = None,
    max_images: int | None = None,
    progress: bool = True,
    skip_bad: bool = False,
    boxes: BoxOptions | None = None,
    any_size: bool = False,
    band: int | None = None,
) -> dict:
    """Convert `source` (folder, zip or 'emoji') into the training zip `dest`; return a summary.

    resolution:    output size (square), any whole number >= 4: which sizes a model takes is its family's
                   rule (powers of two; ResNet/DCGAN b x 2^k such as 48; docs/datasets.md).
    transform:     'center-crop' (largest centred square), 'pad' (white borders), 'stretch', or
                   'center-crop-wide' (a centred resolution:band crop letterboxed in black, for wide subjects).
    band:          center-crop-wide only: the height of the image band (default 3/4 of resolution).
    resize_filter: 'lanczos', 'box', 'bicubic', 'bilinear' or 'nearest'.
    labels:        None = the source's own dataset.json labels if it has any; 'none' = no labels;
                   'dirs' = each top-level subfolder is a class (sorted names); or a .json/.csv file
                   mapping relative image paths to integer classes.
    max_images:    convert only the first N images (sorted path order).
    progress:      show a progress bar (only on a terminal).
    skip_bad:      skip unreadable images and missing or bad annotations (listed in the summary) instead
                   of failing.
    any_size:      kept for old callers: any size is accepted either way.
    boxes:         crop each annotated object (BoxOptions: Pascal VOC annotations, padding, aspect
                   limits); `labels='boxes'` then takes each crop's class from its box name.

    Returns {"dest", "source", "count", "resolution", "transform", "resize_filter", "skipped",
    "skipped_images", "labels" and "num_classes" (both the number of classes, or None), "label_source",
    "seconds"}.
    """
    t0 = time.monotonic()
    source = os.fspath(source)
    resolution = check_resolution(resolution)
    if transform not in TRANSFORMS:
        raise UserError(f"transform {transform!r} is not known: choose {', '.join(TRANSFORMS)}")
    if band is not None and transform != "center-crop-wide":
        raise UserError(f"--band {band}: applies to --transform center-crop-wide only (the image families train on "
                        "square images: center-crop, pad or stretch make them square)")
    if band is not None and (isinstance(band, bool) or not isinstance(band, int) or not 1 <= band <= resolution):
        raise UserError(f"--band {band}: the band height must be a whole number from 1 to --resolution ({resolution})")
    if resize_filter not in RESAMPLE:
        raise UserError(f"resize filter {resize_filter!r} is not known: choose {', '.join(RESIZE_FILTERS)}")
    if max_images is not None and (
        isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1
    ):
        raise UserError(
            f"max_images {max_images!r} is not allowed: use a whole number >= 1 (or none for all images)"
        )
    dest_path = _validate_dest(dest)
    if labels == "boxes" and boxes is None:
        raise UserError("labels 'boxes' takes the class from each box's name: give the annotations with --boxes DIR")
    if boxes is not None:
        if not os.path.isdir(os.path.expanduser(boxes.annotations)):
            raise UserError(f"--boxes '{boxes.annotations}': no such folder of annotations")
        boxes = BoxOptions(os.path.abspath(os.path.expanduser(boxes.annotations)), boxes.pad, boxes.min_aspect,
                           boxes.max_aspect)
        if boxes.pad < 0:
            raise UserError(f"--box-pad {boxes.pad}: must be >= 0")
        for flag, value in (("--min-aspect", boxes.min_aspect), ("--max-aspect", boxes.max_aspect)):
            if value is not None and value <= 0:
                raise UserError(f"{flag} {value}: must be > 0 (a box's height / width)")

    # Source listing.
    if source == "emoji":
        folder = _emoji.emoji_dir()
        spec = SourceSpec("folder", folder, folder)
        names = _emoji.emoji_files(folder)
        src = None
    else:
        src = open_source(source, what="source")
        spec, names = src.spec, list(src.names)
    ignored = list(src.ignored) if src is not None else []

    # Labels (checked against the full listing, before any work).
    mapping, class_names, label_source, where = None, None, None, ""
    if labels is None:  # the source's own dataset.json, if it has labels
        raw = src.read_optional("dataset.json") if src is not None else None
        if raw is not None:
            where = f"'{src.describe('dataset.json')}'"
            meta = _labels.read_dataset_json(raw, where)
            mapping = _labels.labels_from_entries(meta.get("labels"), where)
            if mapping is not None:
                label_source = src.describe("dataset.json")
                gm = meta.get("gancli") if isinstance(meta.get("gancli"), dict) else {}
                class_names = gm.get("class_names")
    elif labels == "boxes":
        pass  # from the box names, after the annotations are read (below)
    elif labels == "dirs":
        if src is None:
            raise UserError(
                "labels 'dirs' needs a folder or zip with one subfolder per class; the built-in 'emoji' has no classes"
            )
        mapping, class_names = _labels.labels_from_dirs(names, source)
        label_source, where = "dirs", "labels 'dirs'"
    elif labels != "none":
        mapping = _labels.read_label_file(labels)
        label_source = os.fspath(labels)
        where = f"label file '{label_source}'"
    classes, num_classes = None, None
    if mapping is not None:
        classes = _labels.match_labels(mapping, names, where, source)
        num_classes = int(classes.max()) + 1
        ok = isinstance(class_names, list) and all(isinstance(c, str) for c in class_names)
        if ok and len(class_names) >= num_classes:
            num_classes = len(class_names)
        else:
            class_names = None
    if max_images is not None:
        names = names[:max_images]
        if classes is not None:
            classes = classes[:max_images]
    skipped: list[str] = []
    box_classes: dict[str, int] | None = None
    if boxes is not None:  # every annotation is read once here, so that a missing one stops before any work
        names, classes, box_classes = _check_annotations(boxes, names, classes, skip_bad, skipped, labels == "boxes")
        if box_classes is not None:
            class_names, num_classes, label_source = sorted(box_classes, key=box_classes.get), len(box_classes), "boxes"

    # Convert and write to a temporary zip beside dest (gancli.fileio: atomic, never replaces a file).
    os.makedirs(os.path.dirname(dest_path), exist_ok=True)
    settings = _Settings(resolution, transform, resize_filter, boxes, band)
    out_labels: list[list] = []
    count, aspect_skipped = 0, 0
    try:
        # The pool forks before the zip is opened and before the progress thread starts.
        with parallel_map(partial(_convert_one, spec, settings), names, min_items=64) as results, \
                atomic_path(dest_path, exclusive=True) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                bar, task = _progress(
                    progress, len(names), f"converting {os.path.basename(os.path.normpath(source))}"
                )
                with bar:
                    for i, result in enumerate(results):
                        if isinstance(result, ImageProblem):
                            if not skip_bad:
                                raise UserError(result.message)
                            skipped.append(result.message if boxes is not None else spec.describe(names[i]))
                        elif isinstance(result, tuple):  # --boxes: the crops of one image
                            crops, n_skipped = result
                            aspect_skipped += n_skipped
                            for png, box_name in crops:
                                arc = archive_name(count)
                                zf.writestr(_member(arc), png)
                                if box_classes is not None:
                                    out_labels.append([arc, box_classes[box_name]])
                                elif classes is not None:
                                    out_labels.append([arc, int(classes[i])])
                                count += 1
                        else:
                            arc = archive_name(count)
                            zf.writestr(_member(arc), result)
                            if classes is not None:
                                out_labels.append([arc, int(classes[i])])
                            count += 1
                        bar.advance(task)
                if count == 0:
                    raise UserError(
                        f"source '{source}': none of its {len(names)} images could be read ({skipped[0]} is the first); nothing to convert"
                    )
                info = {
                    "source": source if source == "emoji" else os.path.abspath(os.path.expanduser(source)),
                    "resolution": resolution,
                    "transform": transform,
                    **({"band": band or resolution * 3 // 4} if transform == "center-crop-wide" else {}),
                    "resize_filter": resize_filter,
                    "count": count,
                    "skipped": len(skipped) + len(ignored),
                    "labels": label_source,
                    "num_classes": num_classes if classes is not None or box_classes is not None else None,
                    "class_names": class_names,
                    "version": _version(),
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                }
                if source == "emoji":
                    info["credit"] = _emoji.EMOJI_CREDIT
                if boxes is not None:
                    info["boxes"] = {"annotations": boxes.annotations, "pad": boxes.pad, "min_aspect": boxes.min_aspect,
                                     "max_aspect": boxes.max_aspect, "skipped_for_aspect": aspect_skipped}
                labelled = classes is not None or box_classes is not None
                meta = {"labels": out_labels if labelled else None, "gancli": info}
                zf.writestr(_member("dataset.json"), json.dumps(meta, indent=1))
    except FileExistsError:
        raise UserError(f"output '{dest}' exists; choose another path or delete it") from None
    finally:
        close_zip_handles()

    return {
        "dest": dest_path,
        "source": source,
        "count": count,
        "resolution": resolution,
        "transform": transform,
        "resize_filter": resize_filter,
        "skipped": len(skipped) + len(ignored),
        "skipped_images": skipped,
        "ignored_members": ignored,  # image members of a zip left out for their names (hidden, '..', absolute)
        "labels": num_classes if classes is not None or box_classes is not None else None,
        "num_classes": num_classes if classes is not None or box_classes is not None else None,
        "label_source": label_source,
        "boxes_skipped_for_aspect": aspect_skipped,
        "seconds": round(time.monotonic() - t0, 3),
    }


def _version() -> str:
    try:
        from gancli import __version__

        return __version__
    except Exception:
        return "?"
