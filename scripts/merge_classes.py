"""Write a copy of a YOLO-format dataset with its classes merged into new ones, images re-encoded as
JPEG: a model "of the user's own classes" for checking detbench's routes beyond the baseline's ten
(README "Model families").

    python scripts/merge_classes.py SRC DST --names top,bottom,accessory --map 2,2,0,0,1,1,1,0,2,2

``--map`` gives, for each source class id in order, the id of the new class it joins. SRC holds
``images/{train,val}`` and ``labels/{train,val}``; DST gets the same, plus ``data.yaml``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from detbench.data.datasets import data_yaml_text


def merge(src: Path, dst: Path, names: list[str], mapping: list[int], quality: int = 90) -> Path:
    """Copy ``src`` to ``dst`` with class ``i`` relabelled ``mapping[i]``; returns dst's data.yaml."""
    if not all(0 <= m < len(names) for m in mapping):
        raise ValueError(f"--map names a class outside 0..{len(names) - 1}: {mapping}")
    for split in ("train", "val"):
        (dst / "images" / split).mkdir(parents=True, exist_ok=True)
        (dst / "labels" / split).mkdir(parents=True, exist_ok=True)
        for img in sorted((src / "images" / split).iterdir()):
            Image.open(img).convert("RGB").save(dst / "images" / split / f"{img.stem}.jpg", quality=quality)
            rows = (src / "labels" / split / f"{img.stem}.txt").read_text().split("\n")
            out = [" ".join([str(mapping[int(r.split()[0])]), *r.split()[1:]]) for r in rows if r.strip()]
            (dst / "labels" / split / f"{img.stem}.txt").write_text("".join(f"{r}\n" for r in out))
    yaml = dst / "data.yaml"
    yaml.write_text(data_yaml_text(tuple(names), header=f"# {src.name}, classes merged into {len(names)}"))
    return yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--names", required=True, help="the new classes, comma-separated")
    ap.add_argument("--map", required=True, help="for each source class id, its new class id")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality")
    a = ap.parse_args()
    print(merge(a.src, a.dst, a.names.split(","), [int(m) for m in a.map.split(",")], a.quality))


if __name__ == "__main__":
    main()
