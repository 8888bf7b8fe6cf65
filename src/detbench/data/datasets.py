"""Datasets in YOLO format: the synthetic default, data.yaml loading and validation."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from detbench import CLASS_NAMES, paths
from detbench._fs import locked
from detbench.data.synth import GENERATOR_VERSION, make_scene
from detbench.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the bytes of a synthetic dataset."""

    train: int = 1500
    val: int = 200
    imgsz: int = 128
    seed: int = 0

    def key(self) -> str:
        return f"synth-g{GENERATOR_VERSION}-t{self.train}-v{self.val}-s{self.imgsz}-seed{self.seed}"


def data_yaml_text(
    names: tuple[str, ...] = CLASS_NAMES, header: str = "", *, train: str = "images/train"
) -> str:
    # No `path:` key: ultralytics then resolves splits against the yaml's own folder, so the
    # tree is relocatable and its bytes do not depend on where it was written.
    lines = [header] if header else []
    lines += [f"train: {train}", "val: images/val", f"nc: {len(names)}", "names:"]
    lines += [f"  {i}: {n}" for i, n in enumerate(names)]
    return "\n".join(lines) + "\n"


def write_synthetic(out: Path, cfg: SynthConfig) -> Path:
    """Write the synthetic dataset to ``out`` and return its data.yaml path.

    Same config, same bytes: every image has its own seeded stream (see ``synth.scene_rng``).
    """
    out = Path(out)
    for split, count in (("train", cfg.train), ("val", cfg.val)):
        img_dir, lbl_dir = out / "images" / split, out / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, boxes = make_scene(cfg.seed, split, i, cfg.imgsz)
            stem = f"{split}_{i:05d}"
            image.save(img_dir / f"{stem}.png", optimize=False)
            text = "".join(b.yolo_line(image.width, image.height) + "\n" for b in boxes)
            (lbl_dir / f"{stem}.txt").write_text(text)
    (out / "synth.json").write_text(
        # "detbench.synth": the name recorded before the subpackage move; the baseline data hash covers it.
        json.dumps({"generator": "detbench.synth", **asdict(cfg)}, indent=2, sort_keys=True) + "\n"
    )
    data_yaml = out / "data.yaml"
    data_yaml.write_text(data_yaml_text(header="# detbench synthetic colorful-fashion dataset"))
    return data_yaml


def cached_dataset(key: str, write: Callable[[Path], Path]) -> Path:
    """Write a generated dataset (once) to ``<cache>/datasets/<key>`` and return its data.yaml.

    ``write(folder)`` writes the tree, data.yaml last, and returns the data.yaml path. Written to a
    private folder and renamed into place under a lock, so a killed run or two parallel runs never
    leave a half dataset that is later reused.
    """
    root = paths.cache_dir("datasets")
    final = root / key
    with locked(root / key):
        if (final / "data.yaml").is_file():
            return final / "data.yaml"
        # Holding the lock proves no live writer owns a temp folder of this key: sweep leftovers.
        for stale in root.glob(f".tmp-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".tmp-{key}-{uuid.uuid4().hex}"
        try:
            write(tmp)
            if final.exists():  # an incomplete leftover: no data.yaml, since that is written last
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final / "data.yaml"


@dataclass(frozen=True)
class Dataset:
    """A YOLO dataset as described by its data.yaml."""

    yaml_path: Path
    root: Path
    names: tuple[str, ...]
    splits: dict[str, Path]

    def images(self, split: str) -> list[Path]:
        folder = self.splits[split]
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)

    def label_for(self, image: Path) -> Path:
        """ultralytics' rule: the last ``images`` path component becomes ``labels``."""
        parts = list(image.parts)
        idx = len(parts) - 1 - parts[::-1].index("images")
        parts[idx] = "labels"
        return Path(*parts).with_suffix(".txt")


def load_dataset(yaml_path: Path | str) -> Dataset:
    """Parse and check a data.yaml; errors name the file and the problem."""
    yaml_path = Path(yaml_path)
    if not yaml_path.is_file():
        raise DatasetError(yaml_path, "data.yaml not found")
    try:
        raw = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as exc:
        raise DatasetError(yaml_path, f"not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(raw, dict):
        raise DatasetError(yaml_path, "expected a mapping at top level")
    missing = [k for k in ("train", "val", "names") if k not in raw]
    if missing:
        raise DatasetError(yaml_path, f"missing key(s): {', '.join(missing)}")
    names_raw = raw["names"]
    if isinstance(names_raw, dict):
        names = tuple(str(names_raw[k]) for k in sorted(names_raw))
    elif isinstance(names_raw, list):
        names = tuple(str(n) for n in names_raw)
    else:
        raise DatasetError(yaml_path, "'names' must be a list or a mapping of id to name")
    if "nc" in raw and int(raw["nc"]) != len(names):
        raise DatasetError(yaml_path, f"nc={raw['nc']} but {len(names)} names")
    root = Path(raw.get("path") or yaml_path.parent)
    if not root.is_absolute():
        root = (yaml_path.parent / root).resolve()
    splits = {}
    for split in ("train", "val", "test"):
        if raw.get(split):
            folder = root / str(raw[split])
            if not folder.is_dir():
                raise DatasetError(yaml_path, f"{split} folder {folder} does not exist")
            splits[split] = folder
    return Dataset(yaml_path=yaml_path, root=root, names=names, splits=splits)


def tree_sha256(root: Path, pattern: str = "**/*") -> str:
    """One hash over the relative paths and contents of every file under ``root``."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(root).glob(pattern) if p.is_file() and p.suffix != ".cache"):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
