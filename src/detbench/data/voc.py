"""Convert a Pascal-VOC detection dataset (the Colorful Fashion layout) to a YOLO dataset."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from detbench import CLASS_NAMES
from detbench.data.datasets import IMAGE_SUFFIXES, data_yaml_text
from detbench.data.images import open_header
from detbench.data.labels import format_problems
from detbench.errors import DatasetError, DetbenchError, ImageError

SPLITS = ("train", "val", "test")
MARKER = "voc.json"
"""Written into every conversion; only a folder holding it may be replaced by a new conversion."""

MAX_XML_BYTES = 4 * 2**20  # VOC annotations are a few KiB; anything this big is not one
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class VocProblem:
    file: Path
    reason: str


@dataclass
class VocReport:
    converted: dict[str, int]
    boxes: int
    problems: list[VocProblem]
    out: Path
    data_yaml: Path
    clipped: int = 0
    """Boxes that reached past the image border and were clipped to it (kept, not dropped)."""


@dataclass(frozen=True)
class _Item:
    stem: str
    image: Path
    lines: tuple[str, ...]
    clipped: int


def hash_fraction(stem: str, seed: int = 0) -> float:
    """A stable number in [0, 1) per file stem; Python's ``hash()`` is salted per process."""
    digest = hashlib.sha256(f"{seed}\0{stem}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _image_size(path: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """(stored size, size as displayed after EXIF rotation); reads the header only, no decode."""
    with open_header(path) as im:
        w, h = im.size
        orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    # Orientations 5-8 rotate by 90 degrees; cv2.imread (ultralytics) applies them when loading.
    return (w, h), ((h, w) if orientation in (5, 6, 7, 8) else (w, h))


def _parse_xml(xml_path: Path) -> ET.Element | str:
    """The <annotation> root, or the reason the file cannot be used."""
    try:
        if xml_path.stat().st_size > MAX_XML_BYTES:
            return f"refused: larger than {MAX_XML_BYTES // 2**20} MiB, not a VOC annotation"
        raw = xml_path.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc.__class__.__name__})"
    # CPython 3.11's ElementTree never fetches external entities and expat >= 2.4 caps
    # entity amplification; VOC files have no use for a DTD at all, so refuse any outright.
    lowered = raw.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        return "malformed XML: refused a DOCTYPE/ENTITY declaration (VOC annotations have none)"
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        return f"malformed XML: {exc}"
    if root.tag != "annotation":
        return f"malformed XML: root element is <{root.tag}>, expected <annotation>"
    return root


def _xml_size(root: ET.Element) -> tuple[float, float] | str:
    """(width, height) from <size>; (0, 0) when absent, meaning: read it from the image."""
    size = root.find("size")
    if size is None:
        return 0.0, 0.0
    dims = []
    for tag in ("width", "height"):
        text = size.findtext(tag)
        if text is None:
            return f"malformed XML: <size> has no <{tag}>"
        value = _number(text)
        if value is None or value < 0:
            return f"non-numeric or negative <size><{tag}> {text.strip()!r}"
        dims.append(value)
    return (dims[0], dims[1]) if dims[0] and dims[1] else (0.0, 0.0)


def _convert_one(
    xml_path: Path, image: Path, classes: dict[str, int], known: str
) -> _Item | list[VocProblem]:
    root = _parse_xml(xml_path)
    if isinstance(root, str):
        return [VocProblem(xml_path, root)]
    size = _xml_size(root)
    if isinstance(size, str):
        return [VocProblem(xml_path, size)]
    try:
        stored, shown = _image_size(image)
    except ImageError as exc:
        return [VocProblem(image, f"image cannot be read: {exc.reason}")]
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return [VocProblem(image, f"image cannot be read ({exc.__class__.__name__}: {exc})")]
    if size == (0.0, 0.0):
        width, height = map(float, shown)
    elif size in (stored, shown):
        width, height = size
    else:
        return [
            VocProblem(
                xml_path,
                f"<size> says {size[0]:g}x{size[1]:g} but {image.name} is "
                f"{stored[0]}x{stored[1]}; the boxes would be normalised wrongly",
            )
        ]

    problems, lines, clipped = [], [], 0
    # `difficult` (and `truncated`) objects are kept: YOLO labels have no such flag, and dropping
    # them would teach the model that those garments are background.
    for k, obj in enumerate(root.findall("object"), 1):
        raw_name = obj.findtext("name")
        if raw_name is None or not raw_name.strip():
            problems.append(VocProblem(xml_path, f"malformed XML: object {k} has no <name>"))
            continue
        name = raw_name.strip()
        where = f"object {k} ({name!r})"
        cls = classes.get(name.lower())
        if cls is None:
            problems.append(VocProblem(xml_path, f"{where}: unknown class {name!r}; known classes: {known}"))
            continue
        box = obj.find("bndbox")
        if box is None:
            problems.append(VocProblem(xml_path, f"malformed XML: {where} has no <bndbox>"))
            continue
        coords = {}
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = box.findtext(tag)
            value = _number(text)
            if value is None:
                reason = f"has no <{tag}>" if text is None else f"non-numeric <{tag}> {text.strip()!r}"
                problems.append(VocProblem(xml_path, f"{where}: {reason}"))
                break
            coords[tag] = value
        else:
            xmin, ymin, xmax, ymax = coords["xmin"], coords["ymin"], coords["xmax"], coords["ymax"]
            if xmax <= xmin or ymax <= ymin:
                problems.append(
                    VocProblem(
                        xml_path,
                        f"{where}: degenerate box xmin={xmin:g} ymin={ymin:g} "
                        f"xmax={xmax:g} ymax={ymax:g} (needs xmax > xmin, "
                        "ymax > ymin)",
                    )
                )
                continue
            # VOC pixels are 1-based; shift by one like ultralytics' VOC.yaml converter
            # (centre = (min+max)/2 - 1, size = max - min), then clip to the image.
            x0, y0, x1, y1 = xmin - 1, ymin - 1, xmax - 1, ymax - 1
            cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
            cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
            if cx1 <= cx0 or cy1 <= cy0:
                problems.append(
                    VocProblem(
                        xml_path,
                        f"{where}: box xmin={xmin:g} ymin={ymin:g} "
                        f"xmax={xmax:g} ymax={ymax:g} lies outside the "
                        f"{width:g}x{height:g} image",
                    )
                )
                continue
            clipped += (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1)
            lines.append(
                f"{cls} {(cx0 + cx1) / 2 / width:.6f} {(cy0 + cy1) / 2 / height:.6f} "
                f"{(cx1 - cx0) / width:.6f} {(cy1 - cy0) / height:.6f}"
            )
    if problems:
        return problems
    return _Item(xml_path.stem, image, tuple(lines), clipped)


def _read_ids(path: Path) -> list[tuple[int, str]] | str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot be read ({exc.__class__.__name__})"
    # Main/ split files hold one id per line; per-class files add a "1"/"-1" column we ignore.
    return [(n, line.split()[0]) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _assign_splits(
    src: Path, xml_stems: set[str], image_stems: set[str], val_fraction: float, seed: int
) -> tuple[dict[str, str], list[VocProblem], str]:
    """stem -> split, problems, and a description of where the split came from.

    ImageSets/Main/{train,val,test}.txt decide when train or val is present. Otherwise the pool
    (trainval.txt if present, else every annotation not in test.txt) is split by ``hash_fraction``.
    """
    main = src / "ImageSets" / "Main"
    present = {s: main / f"{s}.txt" for s in (*SPLITS, "trainval") if (main / f"{s}.txt").is_file()}
    pooled = not {"train", "val"} & present.keys()
    # Test first, so an id in both test.txt and trainval.txt is caught as a leak, not pooled.
    sources = [s for s in (("test", "trainval") if pooled else SPLITS) if s in present]

    assigned: dict[str, str] = {}
    leaked: set[str] = set()
    problems: list[VocProblem] = []
    listed_by: dict[str, str] = {}
    for name in sources:
        ids = _read_ids(present[name])
        if isinstance(ids, str):
            problems.append(VocProblem(present[name], ids))
            continue
        for lineno, stem in ids:
            missing = [
                what for what, pool in (("annotation", xml_stems), ("image", image_stems)) if stem not in pool
            ]
            if missing:
                problems.append(
                    VocProblem(
                        present[name], f"line {lineno}: id {stem!r} has no {' and no '.join(missing)} file"
                    )
                )
            split = "pool" if name == "trainval" else name
            if stem in listed_by and listed_by[stem] != name:
                problems.append(
                    VocProblem(
                        present[name],
                        f"line {lineno}: id {stem!r} is also listed in "
                        f"{listed_by[stem]}.txt (a train/val/test leak)",
                    )
                )
                leaked.add(stem)
            listed_by.setdefault(stem, name)
            assigned.setdefault(stem, split)

    if pooled:
        pool = (
            [s for s, sp in assigned.items() if sp == "pool"]
            if "trainval" in present
            else [s for s in xml_stems if s not in assigned]
        )
        for stem in pool:
            assigned[stem] = "val" if hash_fraction(stem, seed) < val_fraction else "train"
    if present:
        files = ", ".join(f"{s}.txt" for s in sources)
        for stem in sorted(xml_stems - assigned.keys()):
            problems.append(
                VocProblem(
                    src / "Annotations" / f"{stem}.xml", f"not listed in any of ImageSets/Main/{{{files}}}"
                )
            )
    parts = [f"ImageSets/Main ({', '.join(f'{s}.txt' for s in sources)})"] if sources else []
    if pooled:
        parts.append(f"train/val by stem hash (seed={seed}, val_fraction={val_fraction:g})")
    how = "; ".join(parts)
    return {s: sp for s, sp in assigned.items() if s not in leaked}, problems, how


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise DatasetError(out, "output exists and is not a folder")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise DatasetError(
                out,
                f"output folder is not empty and holds no {MARKER} from an earlier "
                "conversion; choose a new or empty folder",
            )


def _place(src: Path, dst: Path, state: dict[str, bool]) -> None:
    # A hard link costs no space; across filesystems (or where links are refused) copy instead.
    if state["link"]:
        try:
            os.link(src, dst)
            return
        except OSError:
            state["link"] = False
    shutil.copy2(src, dst)


def convert_voc(
    src: Path,
    out: Path,
    *,
    names: tuple[str, ...] = CLASS_NAMES,
    val_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
) -> VocReport:
    """Convert ``src`` (Annotations/, JPEGImages/, optional ImageSets/Main/) to YOLO format in ``out``.

    Everything is checked before anything is written. Strict by default: any problem raises
    ``DatasetError`` listing them all. With ``skip_bad`` the good files are converted and the
    problems returned in the report.
    """
    src, out = Path(src), Path(out)
    names = tuple(names)
    if not 0 <= val_fraction < 1:
        raise DetbenchError(f"val_fraction must be in [0, 1), got {val_fraction}")
    classes = {n.strip().lower(): i for i, n in enumerate(names)}
    if len(classes) != len(names):
        raise DetbenchError(f"class names must differ ignoring case and spaces: {', '.join(names)}")
    for sub in ("Annotations", "JPEGImages"):
        if not (src / sub).is_dir():
            raise DatasetError(
                src, f"no {sub}/ folder; expected a Pascal VOC tree (Annotations/*.xml, JPEGImages/*.jpg)"
            )
    _prepare_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    xmls = _files(src / "Annotations", (".xml",))
    # Images are matched to annotations by stem: <filename> inside the XML is often stale after renames.
    images: dict[str, list[Path]] = {}
    for p in _files(src / "JPEGImages", IMAGE_SUFFIXES):
        images.setdefault(p.stem, []).append(p)
    xml_stems = {p.stem for p in xmls}
    problems = [
        VocProblem(p, f"not a supported image type (expected one of {', '.join(IMAGE_SUFFIXES)})")
        for p in sorted((src / "JPEGImages").iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_SUFFIXES
    ]
    for stem, paths in images.items():
        if len(paths) > 1:
            problems.append(
                VocProblem(paths[0], "several images share this stem: " + ", ".join(p.name for p in paths))
            )
        elif stem not in xml_stems:
            problems.append(VocProblem(paths[0], f"image has no annotation file Annotations/{stem}.xml"))

    known = ", ".join(names)
    items: list[_Item] = []
    for xml_path in xmls:
        found = images.get(xml_path.stem, [])
        if len(found) != 1:
            if not found:
                problems.append(
                    VocProblem(
                        xml_path, f"missing image: no JPEGImages/{xml_path.stem}.* for this annotation"
                    )
                )
            continue
        result = _convert_one(xml_path, found[0], classes, known)
        if isinstance(result, list):
            problems.extend(result)
        else:
            items.append(result)

    assigned, split_problems, how = _assign_splits(src, xml_stems, set(images), val_fraction, seed)
    problems.extend(split_problems)
    problems.sort(key=lambda p: str(p.file))  # stable: objects keep their order within a file
    if problems and not skip_bad:
        raise DatasetError(
            src,
            f"{len(problems)} problem(s), nothing written (skip_bad / --skip-bad "
            "converts the good files and reports the rest):\n" + format_problems(problems, root=src),
        )

    by_split: dict[str, list[_Item]] = {s: [] for s in SPLITS}
    for item in items:
        if item.stem in assigned:
            by_split[assigned[item.stem]].append(item)
    for split in ("train", "val"):
        if not by_split[split]:
            raise DatasetError(
                src,
                f"the {split} split would be empty (split: {how}); "
                "ultralytics needs images in both train and val",
            )

    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _write(tmp, by_split, names, how, len(problems))
        if out.exists():
            # Only an empty folder or an earlier conversion reaches here (_prepare_out).
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return VocReport(
        converted={s: len(v) for s, v in by_split.items() if v or s != "test"},
        boxes=sum(len(i.lines) for v in by_split.values() for i in v),
        problems=problems,
        out=out,
        data_yaml=out / "data.yaml",
        clipped=sum(i.clipped for v in by_split.values() for i in v),
    )


def _write(
    root: Path, by_split: dict[str, list[_Item]], names: tuple[str, ...], how: str, skipped: int
) -> None:
    state = {"link": True}
    for split, items in by_split.items():
        if not items and split == "test":
            continue
        img_dir, lbl_dir = root / "images" / split, root / "labels" / split
        img_dir.mkdir(parents=True)
        lbl_dir.mkdir(parents=True)
        for item in sorted(items, key=lambda i: i.stem):
            _place(item.image, img_dir / item.image.name, state)
            # An annotation with no objects becomes an empty label file: an explicit background image.
            (lbl_dir / f"{item.stem}.txt").write_text("".join(line + "\n" for line in item.lines))
    text = data_yaml_text(names, header="# converted from Pascal VOC by detbench data from-voc")
    if by_split["test"]:
        text += "test: images/test\n"
    (root / "data.yaml").write_text(text)
    meta = {
        "generator": "detbench.data.voc",
        "split": how,
        "skipped_problems": skipped,
        "images": {s: len(v) for s, v in by_split.items()},
        "boxes": sum(len(i.lines) for v in by_split.values() for i in v),
    }
    (root / MARKER).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
