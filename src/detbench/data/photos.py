"""Photo-sized scenes: the synthetic garments rendered at deployment sizes, saved as camera JPEGs.

The val set is 128 px PNGs; no deployment decodes those. This set holds scenes stored at 640x480,
1280x720 and 1920x1080, JPEG-encoded, some with an EXIF orientation tag: their stored pixels are
turned the other way and the tag says how to turn them back, as a phone writes a portrait shot.
Labels are for the displayed (EXIF-corrected) image, what ``data.images.load_image``, ``cv2.imread``
and ultralytics all show. Same config and same Pillow/libjpeg build, same bytes.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, features

from detbench.data.datasets import cached_dataset, data_yaml_text
from detbench.data.synth import GENERATOR_VERSION, Box, render_scene

PHOTOS_VERSION = 1  # bump when a change to this file changes the bytes it writes
PHOTO_SIZES: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720), (1920, 1080))  # (w, h) as stored
# EXIF orientation of photo i of size s: ORIENTATIONS[(i + 4 s) % 12]. None = no tag, 1 = a tag saying "as
# stored"; 6 and 8 are what phones write for portrait shots, the mirrored ones (2, 4, 5, 7) are
# rare in the wild but every decoder must still get them right.
ORIENTATIONS: tuple[int | None, ...] = (None, 6, None, 8, 3, 1, None, 2, 4, 5, 7, 6)
EXIF_ORIENTATION = 0x0112
ULTRALYTICS_PHOTOS = ("bus.jpg", "zidane.jpg")
_STREAM = 3  # synth.scene_rng uses 0..2 for train/val/test; photo scenes draw from their own stream

# What exif_transpose does to the stored pixels for each tag, and so its inverse, which turns a
# displayed scene into the pixels to store (6 and 8 are each other's inverse; the rest undo themselves).
_STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _jpeg_build() -> str:
    """The encoder the bytes depend on: Pillow's version and its libjpeg(-turbo)'s."""
    turbo = features.version("libjpeg_turbo") if features.check_feature("libjpeg_turbo") else None
    return f"pil{PIL.__version__}-jpeg{turbo or features.version_codec('jpg')}"


@dataclass(frozen=True)
class PhotoConfig:
    """Everything that determines the bytes of the photo-sized set (with the JPEG encoder's build)."""

    per_size: int = 8
    sizes: tuple[tuple[int, int], ...] = PHOTO_SIZES
    seed: int = 0
    quality: int = 90  # a typical camera/phone JPEG quality; 4:2:0 chroma, Pillow's default

    def key(self) -> str:
        sizes = "_".join(f"{w}x{h}" for w, h in self.sizes)
        return (
            f"photos-g{GENERATOR_VERSION}-p{PHOTOS_VERSION}-n{self.per_size}-{sizes}-q{self.quality}"
            f"-seed{self.seed}-{_jpeg_build()}"
        )


@dataclass(frozen=True)
class PhotoScene:
    """One photo as stored (pixels turned for its tag) and as displayed, with its displayed boxes."""

    name: str
    stored: Image.Image
    orientation: int | None
    displayed: Image.Image  # the rendered scene: what applying the tag to ``stored`` shows
    boxes: list[Box]  # pixel xyxy on ``displayed``


def make_photo(cfg: PhotoConfig, size_index: int, index: int) -> PhotoScene:
    """Photo ``index`` of size ``cfg.sizes[size_index]``; its own seeded stream, so it does not depend
    on ``per_size`` or on the other sizes."""
    w, h = cfg.sizes[size_index]
    # Offset per size, not per_size: the first k photos of each size are the same for any per_size.
    orientation = ORIENTATIONS[(index + 4 * size_index) % len(ORIENTATIONS)]
    # A tag that swaps the axes (5..8) means the camera was held upright: the scene is portrait.
    shown = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    rng = np.random.default_rng([cfg.seed, _STREAM, w, h, index])
    image, boxes = render_scene(rng, *shown)
    stored = image.transpose(_STORE[orientation]) if orientation in _STORE else image
    return PhotoScene(f"{w}x{h}_{index:02d}", stored, orientation, image, boxes)


def write_photos(out: Path, cfg: PhotoConfig) -> Path:
    """Write the photo-sized set to ``out`` (images/val, labels/val) and return its data.yaml."""
    out = Path(out)
    img_dir, lbl_dir = out / "images" / "val", out / "labels" / "val"
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    tags = {}
    for s in range(len(cfg.sizes)):
        for i in range(cfg.per_size):
            photo = make_photo(cfg, s, i)
            kwargs = {}
            if photo.orientation is not None:
                exif = Image.Exif()
                exif[EXIF_ORIENTATION] = photo.orientation
                kwargs["exif"] = exif.tobytes()
            photo.stored.save(img_dir / f"{photo.name}.jpg", "JPEG", quality=cfg.quality, **kwargs)
            text = "".join(b.yolo_line(*photo.displayed.size) + "\n" for b in photo.boxes)
            (lbl_dir / f"{photo.name}.txt").write_text(text)
            tags[photo.name] = photo.orientation
    meta = {"generator": "detbench.data.photos", **asdict(cfg), "orientations": tags}
    (out / "photos.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    data_yaml = out / "data.yaml"
    # One split only: train points at it too, so loaders that require a train key accept the file.
    data_yaml.write_text(
        data_yaml_text(header="# detbench photo-sized synthetic scenes (JPEG, EXIF)", train="images/val")
    )
    return data_yaml


def photo_dataset(cfg: PhotoConfig | None = None) -> Path:
    """Generate (once) the photo-sized set into ``<cache>/datasets`` and return its data.yaml."""
    cfg = cfg or PhotoConfig()
    return cached_dataset(cfg.key(), lambda folder: write_photos(folder, cfg))


def ultralytics_photos() -> tuple[Path, ...]:
    """ultralytics' own bus.jpg and zidane.jpg, from the installed wheel's assets (never downloaded);
    empty when the package or the files are absent. Finds the package without importing it."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.origin:
        return ()
    assets = Path(spec.origin).parent / "assets"
    return tuple(p for p in (assets / n for n in ULTRALYTICS_PHOTOS) if p.is_file())
