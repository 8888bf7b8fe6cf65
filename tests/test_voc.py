"""Pascal-VOC to YOLO conversion: layout, box values, splits, determinism and every reported problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from PIL import Image

from detbench import CLASS_NAMES
from detbench.data.datasets import load_dataset, tree_sha256
from detbench.data.labels import validate_dataset
from detbench.data.voc import MARKER, convert_voc, hash_fraction
from detbench.errors import DatasetError, DetbenchError

W, H = 64, 48

# stem -> objects (name, (xmin, ymin, xmax, ymax)); VOC pixel coordinates, 1-based.
GOOD = {
    "look01": [("hat", (11, 6, 31, 26)), ("shirt", (5, 20, 60, 47))],
    "look02": [(" Pants ", (10, 10, 40, 48))],  # case and spaces differ from CLASS_NAMES
    "look03": [("bag", (2, 2, 12, 12))],
    "look04": [("shoes", (1, 40, 20, 48)), ("dress", (20, 1, 50, 45))],
    "look05": [],  # no objects: a background image
    "look06": [("skirt", (41, 20, 80, 40))],  # reaches past the right border: clipped
}
SPLIT = {"train": ["look01", "look02", "look03", "look04"], "val": ["look05", "look06"]}


def annotation_xml(stem: str, objects, size: tuple[int, int] | None = (W, H), difficult: bool = False) -> str:
    """A VOC annotation as labelImg writes it; ``size=None`` leaves out <size>."""
    parts = [f"<annotation><folder>JPEGImages</folder><filename>{stem}.jpg</filename>"]
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, box in objects:
        coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        parts.append(
            f"<object><name>{escape(name)}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{int(difficult)}</difficult><bndbox>{coords}</bndbox></object>"
        )
    return "".join(parts) + "</annotation>\n"


def add_image(root: Path, stem: str, size: tuple[int, int] = (W, H), suffix: str = ".jpg") -> Path:
    path = root / "JPEGImages" / f"{stem}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    shade = sum(map(ord, stem)) % 200
    Image.new("RGB", size, (shade, 255 - shade, 90)).save(path, quality=90)
    return path


def add_xml(root: Path, stem: str, text: str) -> Path:
    path = root / "Annotations" / f"{stem}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_voc(root: Path, specs=GOOD, split: dict[str, list[str]] | None = SPLIT) -> Path:
    for stem, objects in specs.items():
        add_image(root, stem)
        add_xml(root, stem, annotation_xml(stem, objects))
    if split is not None:
        main = root / "ImageSets" / "Main"
        main.mkdir(parents=True, exist_ok=True)
        for name, stems in split.items():
            (main / f"{name}.txt").write_text("".join(s + "\n" for s in stems))
    return root


def labels_of(out: Path, split: str, stem: str) -> list[str]:
    return (out / "labels" / split / f"{stem}.txt").read_text().splitlines()


class TestConvert:
    def test_writes_yolo_tree(self, tmp_path):
        """Images and labels land in images/{split} and labels/{split}, with data.yaml beside them."""
        report = convert_voc(make_voc(tmp_path / "voc"), tmp_path / "yolo")
        out = tmp_path / "yolo"
        assert report.converted == {"train": 4, "val": 2}
        assert report.boxes == 7
        assert report.problems == []
        assert report.data_yaml == out / "data.yaml"
        assert sorted(p.name for p in (out / "images" / "train").iterdir()) == [
            "look01.jpg",
            "look02.jpg",
            "look03.jpg",
            "look04.jpg",
        ]
        assert sorted(p.name for p in (out / "labels" / "val").iterdir()) == ["look05.txt", "look06.txt"]
        assert (out / "images" / "val" / "look05.jpg").read_bytes() == (
            tmp_path / "voc" / "JPEGImages" / "look05.jpg"
        ).read_bytes()
        assert not (out / "images" / "test").exists()

    def test_data_yaml_keeps_class_order(self, tmp_path):
        """data.yaml lists detbench.CLASS_NAMES in order, and the converted tree passes the label checks."""
        report = convert_voc(make_voc(tmp_path / "voc"), tmp_path / "yolo")
        ds = load_dataset(report.data_yaml)
        assert ds.names == CLASS_NAMES
        assert set(ds.splits) == {"train", "val"}
        validate_dataset(ds)

    def test_known_box_values(self, tmp_path):
        """A 1-based VOC box becomes the hand-computed YOLO line; class names match ignoring case."""
        convert_voc(make_voc(tmp_path / "voc"), tmp_path / "yolo")
        out = tmp_path / "yolo"
        # hat (11,6)-(31,26) on 64x48 -> 0-based (10,5)-(30,25): centre (20,15), size 20x20.
        assert labels_of(out, "train", "look01")[0] == "1 0.312500 0.312500 0.312500 0.416667"
        assert labels_of(out, "train", "look02") == ["4 0.375000 0.583333 0.468750 0.791667"]
        assert labels_of(out, "val", "look05") == []

    def test_clips_box_to_image(self, tmp_path):
        """A box reaching past the border is clipped to the image and counted, not dropped."""
        report = convert_voc(make_voc(tmp_path / "voc"), tmp_path / "yolo")
        # skirt (41..80) on width 64 -> 0-based 40..64 after clipping: centre 52, width 24.
        assert labels_of(tmp_path / "yolo", "val", "look06") == ["6 0.812500 0.604167 0.375000 0.416667"]
        assert report.clipped == 1

    def test_keeps_difficult_objects(self, tmp_path):
        """Objects flagged difficult are converted like any other."""
        src = make_voc(tmp_path / "voc", {"a": [], "b": []}, {"train": ["a"], "val": ["b"]})
        add_xml(src, "a", annotation_xml("a", [("hat", (11, 6, 31, 26))], difficult=True))
        convert_voc(src, tmp_path / "yolo")
        assert labels_of(tmp_path / "yolo", "train", "a") == ["1 0.312500 0.312500 0.312500 0.416667"]

    def test_reads_size_from_image_when_missing(self, tmp_path):
        """Without <size> (or with a zero size) boxes are normalised by the real image size."""
        src = make_voc(tmp_path / "voc", {"a": [], "b": []}, {"train": ["a"], "val": ["b"]})
        add_xml(src, "a", annotation_xml("a", [("hat", (11, 6, 31, 26))], size=None))
        add_xml(src, "b", annotation_xml("b", [("hat", (11, 6, 31, 26))], size=(0, 0)))
        convert_voc(src, tmp_path / "yolo")
        expected = ["1 0.312500 0.312500 0.312500 0.416667"]
        assert labels_of(tmp_path / "yolo", "train", "a") == expected
        assert labels_of(tmp_path / "yolo", "val", "b") == expected

    def test_custom_class_order(self, tmp_path):
        """Class ids follow the ``names`` argument."""
        src = make_voc(
            tmp_path / "voc",
            {"a": [("hat", (11, 6, 31, 26))], "b": [("shoes", (1, 1, 9, 9))]},
            {"train": ["a"], "val": ["b"]},
        )
        report = convert_voc(src, tmp_path / "yolo", names=("shoes", "hat"))
        assert load_dataset(report.data_yaml).names == ("shoes", "hat")
        assert labels_of(tmp_path / "yolo", "train", "a")[0].startswith("1 ")
        assert labels_of(tmp_path / "yolo", "val", "b")[0].startswith("0 ")

    def test_replaces_earlier_conversion(self, tmp_path):
        """Converting into an earlier output replaces it whole, so no stale split survives."""
        out = tmp_path / "yolo"
        convert_voc(make_voc(tmp_path / "voc"), out)
        (tmp_path / "voc" / "ImageSets" / "Main" / "train.txt").write_text("look01\nlook02\nlook03\n")
        (tmp_path / "voc" / "ImageSets" / "Main" / "val.txt").write_text("look04\nlook05\nlook06\n")
        convert_voc(tmp_path / "voc", out)
        assert not (out / "images" / "train" / "look04.jpg").exists()
        assert (out / "images" / "val" / "look04.jpg").is_file()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    def test_refuses_foreign_output_folder(self, tmp_path):
        """A non-empty output folder that is not an earlier conversion is left alone."""
        out = tmp_path / "yolo"
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        with pytest.raises(DatasetError, match=MARKER) as exc:
            convert_voc(make_voc(tmp_path / "voc"), out)
        assert exc.value.path == out
        assert [p.name for p in out.iterdir()] == ["notes.txt"]

    def test_rejects_bad_val_fraction(self, tmp_path):
        """val_fraction outside [0, 1) is refused with the argument named."""
        with pytest.raises(DetbenchError, match="val_fraction"):
            convert_voc(make_voc(tmp_path / "voc"), tmp_path / "yolo", val_fraction=1.5)

    def test_missing_voc_folders(self, tmp_path):
        """A source without Annotations/ is refused naming the folder it expected."""
        (tmp_path / "voc").mkdir()
        with pytest.raises(DatasetError, match="Annotations"):
            convert_voc(tmp_path / "voc", tmp_path / "yolo")


class TestSplits:
    def test_imagesets_decide_splits(self, tmp_path):
        """ImageSets/Main/{train,val,test}.txt put each id in its split; test appears in data.yaml."""
        split = {"train": ["look01", "look02", "look03"], "val": ["look04", "look05"], "test": ["look06"]}
        report = convert_voc(make_voc(tmp_path / "voc", split=split), tmp_path / "yolo")
        assert report.converted == {"train": 3, "val": 2, "test": 1}
        ds = load_dataset(report.data_yaml)
        for name, stems in split.items():
            assert [p.stem for p in ds.images(name)] == stems
        validate_dataset(ds)

    def test_hash_split_is_deterministic(self, tmp_path):
        """Without ImageSets the stem hash splits the data; two runs give byte-identical trees."""
        specs = {f"img{i:02d}": [("hat", (2, 2, 20, 20))] for i in range(20)}
        src = make_voc(tmp_path / "voc", specs, split=None)
        first = convert_voc(src, tmp_path / "a", val_fraction=0.3)
        convert_voc(src, tmp_path / "b", val_fraction=0.3)
        assert tree_sha256(tmp_path / "a") == tree_sha256(tmp_path / "b")
        val = {p.stem for p in (tmp_path / "a" / "images" / "val").iterdir()}
        assert val == {s for s in specs if hash_fraction(s) < 0.3}
        assert 0 < first.converted["val"] < 20

    def test_hash_split_survives_new_images_and_processes(self, tmp_path):
        """Adding an image moves no other image, and another process (other hash salt) agrees."""
        specs = {f"img{i:02d}": [("hat", (2, 2, 20, 20))] for i in range(12)}
        src = make_voc(tmp_path / "voc", specs, split=None)
        convert_voc(src, tmp_path / "a")
        code = (
            "import sys; from pathlib import Path; from detbench.data.voc import convert_voc; "
            "convert_voc(Path(sys.argv[1]), Path(sys.argv[2]))"
        )
        env = {**os.environ, "PYTHONHASHSEED": "12345"}
        subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / "b")], check=True, env=env)
        assert tree_sha256(tmp_path / "a") == tree_sha256(tmp_path / "b")

        before = {p.stem for p in (tmp_path / "a" / "images" / "val").iterdir()}
        add_image(src, "img99")
        add_xml(src, "img99", annotation_xml("img99", []))
        convert_voc(src, tmp_path / "a")
        after = {p.stem for p in (tmp_path / "a" / "images" / "val").iterdir()}
        assert after - {"img99"} == before

    def test_seed_changes_hash_split(self, tmp_path):
        """A different seed gives a different (still complete) split."""
        specs = {f"img{i:02d}": [] for i in range(20)}
        src = make_voc(tmp_path / "voc", specs, split=None)
        a = convert_voc(src, tmp_path / "a", seed=0)
        convert_voc(src, tmp_path / "b", seed=1)
        val = [{p.stem for p in (tmp_path / d / "images" / "val").iterdir()} for d in "ab"]
        assert val[0] != val[1]
        assert sum(a.converted.values()) == 20

    def test_trainval_is_split_by_hash(self, tmp_path):
        """trainval.txt + test.txt (no train/val files): trainval is hash-split, test kept apart."""
        specs = {f"img{i:02d}": [("bag", (2, 2, 20, 20))] for i in range(10)}
        tv = [f"img{i:02d}" for i in range(8)]
        src = make_voc(tmp_path / "voc", specs, {"trainval": tv, "test": ["img08", "img09"]})
        report = convert_voc(src, tmp_path / "yolo", val_fraction=0.5)
        ds = load_dataset(report.data_yaml)
        assert [p.stem for p in ds.images("test")] == ["img08", "img09"]
        assert {p.stem for p in ds.images("val")} == {s for s in tv if hash_fraction(s) < 0.5}
        assert report.converted["train"] + report.converted["val"] == 8

    def test_empty_val_split_is_refused(self, tmp_path):
        """A split that leaves val empty is refused: ultralytics cannot validate on nothing."""
        src = make_voc(tmp_path / "voc", split={"train": list(GOOD), "val": []})
        with pytest.raises(DatasetError, match="val split would be empty"):
            convert_voc(src, tmp_path / "yolo")
        assert not (tmp_path / "yolo").exists()


def _unknown_class(src: Path) -> tuple[str, str]:
    add_image(src, "scarfy")
    add_xml(src, "scarfy", annotation_xml("scarfy", [("hat", (1, 1, 9, 9)), ("Scarf", (1, 1, 9, 9))]))
    return "scarfy.xml", "unknown class 'Scarf'; known classes: sunglass, hat,"


def _missing_image(src: Path) -> tuple[str, str]:
    add_xml(src, "ghost", annotation_xml("ghost", [("hat", (1, 1, 9, 9))]))
    return "ghost.xml", "missing image"


def _malformed_xml(src: Path) -> tuple[str, str]:
    add_image(src, "broken")
    add_xml(src, "broken", annotation_xml("broken", [("hat", (1, 1, 9, 9))])[:70])
    return "broken.xml", "malformed XML"


def _no_bndbox(src: Path) -> tuple[str, str]:
    add_image(src, "nobox")
    add_xml(src, "nobox", "<annotation><object><name>hat</name></object></annotation>")
    return "nobox.xml", "has no <bndbox>"


def _bad_size(src: Path) -> tuple[str, str]:
    add_image(src, "nosize")
    add_xml(
        src,
        "nosize",
        annotation_xml("nosize", [], size=None).replace(
            "<annotation>", "<annotation><size><width>64</width></size>"
        ),
    )
    return "nosize.xml", "<size> has no <height>"


def _degenerate_box(src: Path) -> tuple[str, str]:
    add_image(src, "flat")
    add_xml(src, "flat", annotation_xml("flat", [("hat", (30, 5, 10, 20))]))
    return "flat.xml", "degenerate box"


def _non_numeric_box(src: Path) -> tuple[str, str]:
    add_image(src, "words")
    add_xml(src, "words", annotation_xml("words", [("hat", (1, 1, "ten", 9))]))
    return "words.xml", "non-numeric <xmax> 'ten'"


def _box_outside(src: Path) -> tuple[str, str]:
    add_image(src, "away")
    add_xml(src, "away", annotation_xml("away", [("hat", (100, 100, 120, 120))]))
    return "away.xml", "lies outside the 64x48 image"


def _size_mismatch(src: Path) -> tuple[str, str]:
    add_image(src, "small", size=(32, 24))
    add_xml(src, "small", annotation_xml("small", [("hat", (1, 1, 9, 9))]))
    return "small.xml", "<size> says 64x48 but small.jpg is 32x24"


def _image_without_annotation(src: Path) -> tuple[str, str]:
    add_image(src, "orphan")
    return "orphan.jpg", "image has no annotation file"


def _unreadable_image(src: Path) -> tuple[str, str]:
    (src / "JPEGImages" / "junk.jpg").write_bytes(b"not a jpeg")
    add_xml(src, "junk", annotation_xml("junk", []))
    return "junk.jpg", "image cannot be read"


def _doctype(src: Path) -> tuple[str, str]:
    add_image(src, "laughs")
    add_xml(
        src,
        "laughs",
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxx">]>'
        + annotation_xml("laughs", [("&x;", (1, 1, 9, 9))]).replace("&amp;", "&"),
    )
    return "laughs.xml", "refused a DOCTYPE/ENTITY"


def _id_without_files(src: Path) -> tuple[str, str]:
    with (src / "ImageSets" / "Main" / "val.txt").open("a") as f:
        f.write("nowhere\n")
    return "val.txt", "line 3: id 'nowhere' has no annotation and no image file"


def _split_leak(src: Path) -> tuple[str, str]:
    with (src / "ImageSets" / "Main" / "val.txt").open("a") as f:
        f.write("look01\n")
    return "val.txt", "'look01' is also listed in train.txt"


def _unlisted_annotation(src: Path) -> tuple[str, str]:
    add_image(src, "extra")
    add_xml(src, "extra", annotation_xml("extra", []))
    return "extra.xml", "not listed in any of ImageSets/Main/{train.txt, val.txt}"


def _unsupported_image_type(src: Path) -> tuple[str, str]:
    (src / "JPEGImages" / "scan.tiff").write_bytes(b"II*\0")
    return "scan.tiff", "not a supported image type"


DEFECTS = [
    _unknown_class,
    _missing_image,
    _malformed_xml,
    _no_bndbox,
    _bad_size,
    _degenerate_box,
    _non_numeric_box,
    _box_outside,
    _size_mismatch,
    _image_without_annotation,
    _unreadable_image,
    _doctype,
    _id_without_files,
    _split_leak,
    _unlisted_annotation,
    _unsupported_image_type,
]


class TestProblems:
    @pytest.mark.parametrize("defect", DEFECTS, ids=lambda f: f.__name__.strip("_"))
    def test_strict_mode_names_file_and_reason(self, tmp_path, defect):
        """Each defect raises DatasetError naming the file and the reason, and nothing is written."""
        src = make_voc(tmp_path / "voc")
        name, reason = defect(src)
        with pytest.raises(DatasetError) as exc:
            convert_voc(src, tmp_path / "yolo")
        assert exc.value.path == src
        assert any(name in line and reason in line for line in str(exc.value).splitlines()), str(exc.value)
        assert not (tmp_path / "yolo").exists()

    def test_strict_mode_lists_every_problem(self, tmp_path):
        """All defects at once: the message has one line per problem, each naming its file."""
        src = make_voc(tmp_path / "voc")
        expected = [d(src) for d in DEFECTS]
        with pytest.raises(DatasetError) as exc:
            convert_voc(src, tmp_path / "yolo")
        lines = str(exc.value).splitlines()
        for name, reason in expected:
            assert any(name in line and reason in line for line in lines), (name, reason)

    def test_skip_bad_converts_the_rest(self, tmp_path):
        """With skip_bad the good files are converted and every defect comes back in the report."""
        src = make_voc(tmp_path / "voc")
        expected = [d(src) for d in DEFECTS]
        report = convert_voc(src, tmp_path / "yolo", skip_bad=True)
        assert report.converted == {"train": 3, "val": 2}  # look01 leaked into val.txt: dropped from both
        for name, reason in expected:
            assert any(p.file.name == name and reason in p.reason for p in report.problems), (name, reason)
        validate_dataset(load_dataset(report.data_yaml))
        stems = {p.stem for p in (tmp_path / "yolo" / "images").rglob("*.jpg")}
        assert stems == {"look02", "look03", "look04", "look05", "look06"}

    def test_problem_list_is_capped(self, tmp_path):
        """A long problem list is cut at 50 lines with a count of the rest."""
        src = make_voc(tmp_path / "voc", split=None)
        for i in range(60):
            add_xml(src, f"ghost{i:02d}", annotation_xml(f"ghost{i:02d}", []))
        with pytest.raises(DatasetError) as exc:
            convert_voc(src, tmp_path / "yolo")
        message = str(exc.value)
        assert "60 problem(s)" in message
        assert "... and 10 more" in message
        assert sum("missing image" in line for line in message.splitlines()) == 50
