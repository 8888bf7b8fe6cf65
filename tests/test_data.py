"""The synthetic dataset: deterministic bytes, sane boxes, the class order, data.yaml loading."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import numpy as np
import pytest

from detbench import CLASS_NAMES
from detbench.cli import main
from detbench.data.datasets import SynthConfig, load_dataset, tree_sha256, write_synthetic
from detbench.data.synth import make_scene
from detbench.errors import DatasetError


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    stack = [cmp]
    while stack:
        c = stack.pop()
        if c.left_only or c.right_only or c.diff_files or c.funny_files:
            return False
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        if mismatch or errors:
            return False
        stack.extend(c.subdirs.values())
    return True


def test_synth_cli_twice_gives_byte_identical_trees(tmp_path: Path) -> None:
    """`detbench data synth` with the same arguments writes the same bytes."""
    args = ["data", "synth", "--train", "6", "--val", "3", "--imgsz", "96", "--seed", "7"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert _same_tree(tmp_path / "a", tmp_path / "b")
    assert tree_sha256(tmp_path / "a") == tree_sha256(tmp_path / "b")


def test_different_seed_gives_different_images(tmp_path: Path) -> None:
    """The seed matters (so the identity test above is not trivially true)."""
    a = write_synthetic(tmp_path / "a", SynthConfig(train=3, val=1, imgsz=96, seed=1)).parent
    b = write_synthetic(tmp_path / "b", SynthConfig(train=3, val=1, imgsz=96, seed=2)).parent
    assert tree_sha256(a, "images/**/*") != tree_sha256(b, "images/**/*")


def test_image_i_does_not_depend_on_split_size(tmp_path: Path) -> None:
    """Each image has its own stream: splits of 3 and of 8 share their first 3 files, byte for byte."""
    small = load_dataset(write_synthetic(tmp_path / "s", SynthConfig(train=3, val=1, imgsz=64, seed=3)))
    big = load_dataset(write_synthetic(tmp_path / "b", SynthConfig(train=8, val=1, imgsz=64, seed=3)))
    pairs = list(zip(small.images("train"), big.images("train")))
    assert len(pairs) == 3
    for a, b in pairs:
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
        assert small.label_for(a).read_bytes() == big.label_for(b).read_bytes()
    assert big.images("train")[3].read_bytes() != pairs[0][1].read_bytes()  # the images are not all alike


def test_data_yaml_has_the_ten_classes_in_order(tmp_path: Path) -> None:
    """data.yaml lists sunglass..shoes as ids 0-9 and loads back with the same order."""
    ds = load_dataset(write_synthetic(tmp_path, SynthConfig(train=2, val=2, imgsz=64, seed=0)))
    assert ds.names == CLASS_NAMES
    assert ds.names[0] == "sunglass" and ds.names[9] == "shoes"
    assert len(ds.images("train")) == 2 and len(ds.images("val")) == 2


def test_labels_are_valid_yolo_boxes_inside_the_image(tmp_path: Path) -> None:
    """Every label line has a known class and a normalised box inside the image."""
    root = write_synthetic(tmp_path, SynthConfig(train=40, val=0 + 1, imgsz=128, seed=0)).parent
    rows = np.array(
        [
            line.split()
            for f in sorted((root / "labels").rglob("*.txt"))
            for line in f.read_text().splitlines()
        ],
        dtype=float,
    )
    assert len(rows) > 100
    cls, xywh = rows[:, 0], rows[:, 1:]
    assert set(np.unique(cls).astype(int)) == set(range(10)), "every class appears in 40 scenes"
    assert (xywh[:, 2:] > 0).all()
    assert (xywh[:, :2] - xywh[:, 2:] / 2 >= -1e-6).all() and (
        xywh[:, :2] + xywh[:, 2:] / 2 <= 1 + 1e-6
    ).all()


def test_sunglasses_are_small_relative_to_dresses() -> None:
    """Garment sizes stay realistic: sunglasses are far smaller than dresses or pants."""
    areas: dict[int, list[float]] = {}
    for i in range(60):
        _, boxes = make_scene(0, "train", i, 128)
        for b in boxes:
            areas.setdefault(b.cls, []).append((b.x1 - b.x0) * (b.y1 - b.y0))
    assert np.median(areas[0]) * 8 < np.median(areas[7])
    assert np.median(areas[0]) * 8 < np.median(areas[4])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("train: images/train\nnames: [a]\n", "missing key(s): val"),
        ("train: images/train\nval: images/val\n", "missing key(s): names"),
        ("- just\n- a list\n", "expected a mapping"),
        ("train: images/train\nval: images/val\nnames: [a, b]\nnc: 3\n", "nc=3 but 2 names"),
        ("train: [unclosed\n", "not valid YAML"),
    ],
    ids=["no-val", "no-names", "list", "nc-mismatch", "bad-yaml"],
)
def test_bad_data_yaml_is_reported_with_its_path(tmp_path: Path, text: str, reason: str) -> None:
    """A malformed data.yaml raises DatasetError naming the file and the problem."""
    yaml_path = tmp_path / "data.yaml"
    yaml_path.write_text(text)
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "val").mkdir(parents=True)
    with pytest.raises(DatasetError, match=re.escape(reason)) as info:
        load_dataset(yaml_path)
    assert str(yaml_path) in str(info.value)
