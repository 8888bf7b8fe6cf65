"""Dataset checks shared by the CLI, training and the robustness suite: every problem names its file."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from detbench.data.datasets import Dataset
from detbench.errors import DatasetError

COORD_TOL = 1e-6
"""Slack for coordinates written with a few decimals (``cx - w/2`` may round to -1e-7)."""

MAX_LISTED = 50


@dataclass(frozen=True)
class LabelProblem:
    file: Path
    line: int | None
    reason: str


class _Problem(Protocol):
    file: Path
    reason: str


def format_problems(
    problems: Sequence[_Problem], *, root: Path | None = None, limit: int = MAX_LISTED
) -> str:
    """One ``file[:line]: reason`` per line, paths relative to ``root`` if inside it, capped at ``limit``."""
    lines = []
    for p in problems[:limit]:
        name = str(p.file)
        if root is not None and p.file.is_relative_to(root):
            name = p.file.relative_to(root).as_posix()
        line = getattr(p, "line", None)
        lines.append(f"  {name}:{line}: {p.reason}" if line is not None else f"  {name}: {p.reason}")
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


def _check_line(fields: list[str], nc: int) -> str | None:
    """The reason one label line is unusable for detection, or None."""
    if len(fields) != 5:
        hint = " (looks like a segmentation polygon; detection needs boxes)" if len(fields) > 5 else ""
        return f"expected 5 fields 'class cx cy w h', got {len(fields)}{hint}"
    values = []
    for f in fields:
        try:
            v = float(f)
        except ValueError:
            return f"non-numeric value {f!r}"
        if not math.isfinite(v):
            return f"non-finite value {f!r}"
        values.append(v)
    cls, cx, cy, w, h = values
    # ultralytics reads the class column as a float and truncates it, so "1.5" would silently become 1.
    if not cls.is_integer():
        return f"class id {fields[0]!r} is not an integer"
    if not 0 <= cls < nc:
        return f"class id {int(cls)} out of range 0..{nc - 1} ({nc} names in data.yaml)"
    for tag, text, v in zip(("cx", "cy", "w", "h"), fields[1:], (cx, cy, w, h)):
        if not -COORD_TOL <= v <= 1 + COORD_TOL:
            return f"{tag}={text} outside [0, 1] (pixel coordinates instead of normalised ones?)"
    if w <= 0 or h <= 0:
        return f"non-positive box size w={fields[3]} h={fields[4]}"
    return None


def _check_label_file(path: Path, nc: int) -> list[LabelProblem]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [LabelProblem(path, None, "not a UTF-8 text file")]
    except OSError as exc:
        return [LabelProblem(path, None, f"cannot be read ({exc.strerror or exc.__class__.__name__})")]
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue  # ultralytics skips blank lines too
        reason = _check_line(line.split(), nc)
        if reason:
            problems.append(LabelProblem(path, lineno, reason))
    return problems


def _labels_folder(ds: Dataset, folder: Path) -> Path | None:
    if "images" not in folder.parts:
        return None
    return ds.label_for(folder / "x.jpg").parent


def check_dataset(ds: Dataset, *, allow_background: bool = False) -> list[LabelProblem]:
    """Every problem in the label files of ``ds``'s splits, in a stable order."""
    problems: list[LabelProblem] = []
    nc = len(ds.names)
    for split, folder in ds.splits.items():
        labels_dir = _labels_folder(ds, folder)
        if labels_dir is None:
            problems.append(
                LabelProblem(
                    folder,
                    None,
                    f"{split} folder has no 'images' path component, so ultralytics cannot find its labels",
                )
            )
            continue
        images = ds.images(split)
        if not images:
            problems.append(LabelProblem(folder, None, f"{split} split has no images"))
        expected: set[Path] = set()
        for image in images:
            label = ds.label_for(image)
            expected.add(label)
            if label.is_file():
                problems.extend(_check_label_file(label, nc))
            elif not allow_background:
                problems.append(
                    LabelProblem(
                        image,
                        None,
                        f"no label file {label.name}; YOLO would train on it as a background "
                        "image with no objects (allowed only with allow_background / "
                        "--allow-background)",
                    )
                )
        if labels_dir.is_dir():
            for label in sorted(labels_dir.rglob("*.txt")):
                if label not in expected:
                    problems.append(
                        LabelProblem(
                            label, None, f"label file without an image (no {label.stem}.* image in {folder})"
                        )
                    )
    return problems


def validate_dataset(ds: Dataset, *, allow_background: bool = False) -> None:
    """Raise ``DatasetError`` on ``ds.yaml_path`` listing every label problem; return if there are none."""
    problems = check_dataset(ds, allow_background=allow_background)
    if problems:
        raise DatasetError(
            ds.yaml_path, f"{len(problems)} label problem(s):\n" + format_problems(problems, root=ds.root)
        )
