"""YOLO dataset checks: each kind of broken dataset is refused with the offending file named."""

from __future__ import annotations

from pathlib import Path

import pytest

from detbench.data.datasets import SynthConfig, load_dataset, write_synthetic
from detbench.data.labels import LabelProblem, check_dataset, format_problems, validate_dataset
from detbench.errors import DatasetError

GOOD_LINE = "0 0.500000 0.500000 0.200000 0.200000"
LABEL = "labels/train/train_00001.txt"


@pytest.fixture
def synth(tmp_path) -> Path:
    """A clean synthetic dataset; returns its data.yaml."""
    return write_synthetic(tmp_path / "ds", SynthConfig(train=4, val=2, imgsz=64, seed=0))


def _bad_line(line: str):
    def corrupt(root: Path) -> str:
        (root / LABEL).write_text(f"{GOOD_LINE}\n{line}\n")
        return f"{LABEL}:2:"

    corrupt.__name__ = line
    return corrupt


def _drop_label(root: Path) -> str:
    (root / "labels/val/val_00000.txt").unlink()
    return "images/val/val_00000.png: no label file val_00000.txt; YOLO would train on it as a background"


def _stray_label(root: Path) -> str:
    (root / "labels/train/lost.txt").write_text(GOOD_LINE + "\n")
    return "labels/train/lost.txt: label file without an image"


def _empty_split(root: Path) -> str:
    for folder in ("images/val", "labels/val"):
        for p in (root / folder).iterdir():
            p.unlink()
    return "images/val: val split has no images"


def _not_utf8(root: Path) -> str:
    (root / LABEL).write_bytes(b"\xff\xfe0 0.5\x00")
    return f"{LABEL}: not a UTF-8 text file"


CASES = [
    (_bad_line("10 0.5 0.5 0.2 0.2"), "class id 10 out of range 0..9"),
    (_bad_line("-1 0.5 0.5 0.2 0.2"), "class id -1 out of range"),
    (_bad_line("1.5 0.5 0.5 0.2 0.2"), "class id '1.5' is not an integer"),
    (_bad_line("1 1.5 0.5 0.2 0.2"), "cx=1.5 outside [0, 1]"),
    (_bad_line("1 32 16 10 10"), "cx=32 outside [0, 1] (pixel coordinates"),
    (_bad_line("1 0.5 0.5 0.2 -0.1"), "h=-0.1 outside [0, 1]"),
    (_bad_line("1 0.5 0.5 0 0.2"), "non-positive box size w=0 h=0.2"),
    (_bad_line("1 0.5 0.5 0.2"), "expected 5 fields 'class cx cy w h', got 4"),
    (_bad_line("1 0.1 0.1 0.9 0.1 0.5 0.9"), "got 7 (looks like a segmentation polygon"),
    (_bad_line("hat 0.5 0.5 0.2 0.2"), "non-numeric value 'hat'"),
    (_bad_line("1 0.5 nan 0.2 0.2"), "non-finite value 'nan'"),
    (_drop_label, None),
    (_stray_label, None),
    (_empty_split, None),
    (_not_utf8, None),
]


class TestValidateDataset:
    def test_clean_synthetic_dataset_passes(self, synth):
        """The synthetic dataset has no label problems."""
        ds = load_dataset(synth)
        assert check_dataset(ds) == []
        validate_dataset(ds)

    @pytest.mark.parametrize(("corrupt", "reason"), CASES, ids=[c.__name__.strip("_") for c, _ in CASES])
    def test_bad_dataset_names_the_file(self, synth, corrupt, reason):
        """Each corruption raises DatasetError on data.yaml with a line naming the file and the reason."""
        where = corrupt(synth.parent)
        with pytest.raises(DatasetError) as exc:
            validate_dataset(load_dataset(synth))
        assert exc.value.path == synth
        lines = [line.strip() for line in str(exc.value).splitlines()]
        assert any(line.startswith(where) and (reason or "") in line for line in lines), str(exc.value)

    @pytest.mark.parametrize("key", ["train", "val", "names"])
    def test_missing_yaml_key_is_refused_on_load(self, synth, key):
        """A data.yaml without train, val or names is refused by load_dataset, naming the file and key."""
        kept = [
            line
            for line in synth.read_text().splitlines()
            if not line.startswith(f"{key}:") and not (key == "names" and line.startswith("  "))
        ]
        synth.write_text("\n".join(line for line in kept if not line.startswith("nc:")) + "\n")
        with pytest.raises(DatasetError, match=f"missing key\\(s\\): {key}") as exc:
            load_dataset(synth)
        assert exc.value.path == synth

    def test_background_images_allowed_on_request(self, synth):
        """An image without a label file passes only with allow_background=True."""
        _drop_label(synth.parent)
        ds = load_dataset(synth)
        assert [p.file.name for p in check_dataset(ds)] == ["val_00000.png"]
        validate_dataset(ds, allow_background=True)

    def test_empty_label_file_and_blank_lines_are_fine(self, synth):
        """An empty label file (explicit background) and blank lines are valid, like in ultralytics."""
        (synth.parent / LABEL).write_text("")
        (synth.parent / "labels/train/train_00002.txt").write_text(f"\n{GOOD_LINE}\n\n")
        validate_dataset(load_dataset(synth))

    def test_reports_every_problem_with_line_numbers(self, synth):
        """check_dataset returns one LabelProblem per bad line, in file order."""
        label = synth.parent / LABEL
        label.write_text(f"{GOOD_LINE}\n12 0.5 0.5 0.1 0.1\n{GOOD_LINE}\n0 0.5 0.5 2 0.1\n")
        problems = check_dataset(load_dataset(synth))
        assert [(p.file, p.line) for p in problems] == [(label, 2), (label, 4)]


class TestFormatProblems:
    def test_caps_long_lists(self, tmp_path):
        """More than ``limit`` problems are cut with a count of the rest; paths are made relative."""
        problems = [LabelProblem(tmp_path / f"f{i}.txt", i, "bad") for i in range(7)]
        text = format_problems(problems, root=tmp_path, limit=5)
        assert text.splitlines() == [f"  f{i}.txt:{i}: bad" for i in range(5)] + ["  ... and 2 more"]

    def test_keeps_paths_outside_root(self, tmp_path):
        """A path outside ``root`` is shown whole, and a problem without a line has no line number."""
        problem = LabelProblem(Path("/elsewhere/x.txt"), None, "gone")
        assert format_problems([problem], root=tmp_path) == "  /elsewhere/x.txt: gone"
