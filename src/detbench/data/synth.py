"""Deterministic synthetic stand-in for the "Colorful Fashion" dataset.

Each scene holds one to three simple human figures wearing garments drawn as silhouettes in
bright random colours. Every drawing call paints the RGB image and, in lockstep, an id map
that records which garment owns each pixel; boxes are the bounding boxes of the pixels a
garment still owns at the end, so occlusion and cropping at the border are exact.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from detbench import CLASS_NAMES

CLS = {name: i for i, name in enumerate(CLASS_NAMES)}
GENERATOR_VERSION = 1  # bump when a change to this file changes the pixels or boxes it draws
_BODY_ID = 255  # body parts occlude garments behind them but carry no label
_MIN_VISIBLE = 0.35  # a garment hidden more than this is not labelled (annotators skip it)


@dataclass(frozen=True)
class Box:
    cls: int
    x0: float
    y0: float
    x1: float
    y1: float

    def yolo_line(self, width: int, height: int) -> str:
        cx = (self.x0 + self.x1) / 2 / width
        cy = (self.y0 + self.y1) / 2 / height
        w = (self.x1 - self.x0) / width
        h = (self.y1 - self.y0) / height
        return f"{self.cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def _bright(rng: np.random.Generator) -> tuple[int, int, int]:
    h, s, v = rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.65, 1.0)
    return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def _dark(rng: np.random.Generator) -> tuple[int, int, int]:
    g = int(rng.integers(0, 50))
    return (g, g, int(g + rng.integers(0, 30)))


_SKIN = [(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36)]


class _Painter:
    """Draws on the RGB image and the garment-id map together."""

    def __init__(self, image: Image.Image) -> None:
        self.rgb = ImageDraw.Draw(image)
        self.ids = Image.new("L", image.size, 0)
        self.idd = ImageDraw.Draw(self.ids)
        self.garments: list[tuple[int, int, int]] = []  # (id, class, pixels when drawn)

    def _new_id(self) -> int:
        return len(self.garments) + 1

    def shape(self, kind: str, xy, fill, gid: int, **kw) -> None:
        getattr(self.rgb, kind)(xy, fill=fill, **kw)
        getattr(self.idd, kind)(xy, fill=gid, **kw)

    def garment(self, cls: int, parts: list[tuple[str, object, dict]], fill) -> None:
        gid = self._new_id()
        for kind, xy, kw in parts:
            kw = dict(kw)
            colour = kw.pop("colour", fill)
            self.shape(kind, xy, colour, gid, **kw)
        drawn = int((np.asarray(self.ids) == gid).sum())
        self.garments.append((gid, cls, drawn))

    def boxes(self) -> list[Box]:
        ids = np.asarray(self.ids)
        out = []
        for gid, cls, drawn in self.garments:
            ys, xs = np.nonzero(ids == gid)
            if drawn == 0 or len(xs) < 6 or len(xs) < _MIN_VISIBLE * drawn:
                continue
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            out.append(Box(cls, float(x0), float(y0), float(x1), float(y1)))
        return out


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    kind = rng.integers(0, 4)
    if kind == 0:  # soft solid colour
        base = np.full((h, w, 3), rng.integers(90, 256, 3), dtype=np.float32)
    elif kind == 1:  # vertical gradient
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        base = np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).copy()
    elif kind == 2:  # noisy texture
        base = rng.normal(rng.integers(60, 200), 35, (h, w, 3)).astype(np.float32)
    else:  # wall and floor
        base = np.empty((h, w, 3), dtype=np.float32)
        horizon = int(h * rng.uniform(0.55, 0.85))
        base[:horizon] = rng.integers(120, 256, 3)
        base[horizon:] = rng.integers(40, 160, 3)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 5))):  # clutter: plain rectangles and discs
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.uniform(4, w / 3), y0 + rng.uniform(4, h / 3)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    return img


def _figure(p: _Painter, rng: np.random.Generator, cx: float, top: float, H: float) -> None:
    """One figure of height H whose head top is at ``top``, centred on ``cx``."""
    skin = _SKIN[int(rng.integers(0, len(_SKIN)))]
    y = lambda f: top + f * H  # noqa: E731 - fractions of the figure's height read clearest
    sw, ww, hw = 0.13 * H, 0.10 * H, 0.11 * H  # half widths: shoulders, waist, hips
    limb = max(2, int(0.055 * H))
    head_r = 0.06 * H
    arm_out = rng.uniform(0.02, 0.10) * H
    hand_l, hand_r = (cx - sw - arm_out, y(0.50)), (cx + sw + arm_out, y(0.50))
    foot_dx = rng.uniform(0.04, 0.08) * H
    foot_l, foot_r = (cx - foot_dx, y(0.96)), (cx + foot_dx, y(0.96))
    hip_l, hip_r = (cx - hw * 0.55, y(0.50)), (cx + hw * 0.55, y(0.50))

    # Body (occludes what is behind it, carries no label).
    b = _BODY_ID
    p.shape("ellipse", (cx - head_r * 0.85, y(0.01), cx + head_r * 0.85, y(0.01) + 2 * head_r), skin, b)
    p.shape("rectangle", (cx - 0.025 * H, y(0.12), cx + 0.025 * H, y(0.17)), skin, b)
    torso = [
        (cx - sw, y(0.17)),
        (cx + sw, y(0.17)),
        (cx + ww, y(0.45)),
        (cx + hw, y(0.52)),
        (cx - hw, y(0.52)),
        (cx - ww, y(0.45)),
    ]
    p.shape("polygon", torso, skin, b)
    for sh, hand in (((cx - sw, y(0.18)), hand_l), ((cx + sw, y(0.18)), hand_r)):
        p.shape("line", [sh, hand], skin, b, width=limb)
    for hip, foot in ((hip_l, foot_l), (hip_r, foot_r)):
        p.shape("line", [hip, foot], skin, b, width=int(limb * 1.3))

    def leg_poly(hip, foot, frac, flare=0.0):
        """Quad around the leg from the hip down to ``frac`` of the way to the foot."""
        fx = hip[0] + (foot[0] - hip[0]) * frac
        fy = hip[1] + (foot[1] - hip[1]) * frac
        half = limb * 0.95 + flare
        return [
            (hip[0] - half - 1, hip[1] - 0.02 * H),
            (hip[0] + half + 1, hip[1] - 0.02 * H),
            (fx + half, fy),
            (fx - half, fy),
        ]

    top_kind = rng.choice(["shirt", "jacket", "dress", "none"], p=[0.38, 0.3, 0.22, 0.10])
    colour = _bright(rng)
    if top_kind == "dress":
        hem = y(rng.uniform(0.68, 0.85))
        flare = rng.uniform(0.12, 0.22) * H
        body = [
            (cx - sw * 0.8, y(0.17)),
            (cx + sw * 0.8, y(0.17)),
            (cx + ww, y(0.42)),
            (cx + flare, hem),
            (cx - flare, hem),
            (cx - ww, y(0.42)),
        ]
        p.garment(CLS["dress"], [("polygon", body, {})], colour)
    else:
        bottom = rng.choice(["pants", "shorts", "skirt"], p=[0.45, 0.3, 0.25])
        bcol = _bright(rng)
        if bottom == "pants":
            parts = [
                ("polygon", leg_poly(hip_l, foot_l, 0.93), {}),
                ("polygon", leg_poly(hip_r, foot_r, 0.93), {}),
                ("rectangle", (cx - hw, y(0.48), cx + hw, y(0.56)), {}),
            ]
            p.garment(CLS["pants"], parts, bcol)
        elif bottom == "shorts":
            parts = [
                ("polygon", leg_poly(hip_l, foot_l, 0.33, 1), {}),
                ("polygon", leg_poly(hip_r, foot_r, 0.33, 1), {}),
                ("rectangle", (cx - hw, y(0.48), cx + hw, y(0.56)), {}),
            ]
            p.garment(CLS["shorts"], parts, bcol)
        else:
            hem = y(rng.uniform(0.66, 0.80))
            flare = rng.uniform(0.13, 0.2) * H
            p.garment(
                CLS["skirt"],
                [
                    (
                        "polygon",
                        [(cx - hw, y(0.47)), (cx + hw, y(0.47)), (cx + flare, hem), (cx - flare, hem)],
                        {},
                    )
                ],
                bcol,
            )
        if top_kind == "shirt":
            sleeve = 0.35
            parts = [("polygon", [*torso[:4], (cx - hw, y(0.52)), *torso[5:]], {})]
            for sh, hand in (((cx - sw, y(0.18)), hand_l), ((cx + sw, y(0.18)), hand_r)):
                ex = sh[0] + (hand[0] - sh[0]) * sleeve
                ey = sh[1] + (hand[1] - sh[1]) * sleeve
                parts.append(("line", [sh, (ex, ey)], {"width": int(limb * 1.6)}))
            collar = (cx - 0.03 * H, y(0.17), cx + 0.03 * H, y(0.21))
            parts.append(("pieslice", collar, {"start": 0, "end": 180, "colour": _bright(rng)}))
            p.garment(CLS["shirt"], parts, colour)
        elif top_kind == "jacket":
            inner = _bright(rng) if rng.random() < 0.6 else skin
            parts = [("polygon", torso, {})]
            for sh, hand in (((cx - sw, y(0.18)), hand_l), ((cx + sw, y(0.18)), hand_r)):
                ex = sh[0] + (hand[0] - sh[0]) * 0.9
                ey = sh[1] + (hand[1] - sh[1]) * 0.9
                parts.append(("line", [sh, (ex, ey)], {"width": int(limb * 1.5)}))
            # Open front: a strip of what is underneath shows between the lapels.
            gap = 0.035 * H
            parts.append(
                (
                    "polygon",
                    [
                        (cx - gap, y(0.17)),
                        (cx + gap, y(0.17)),
                        (cx + gap * 0.8, y(0.52)),
                        (cx - gap * 0.8, y(0.52)),
                    ],
                    {"colour": inner},
                )
            )
            dark = tuple(max(0, c - 90) for c in colour)
            for s in (-1, 1):
                parts.append(
                    (
                        "line",
                        [(cx + s * gap, y(0.17)), (cx + s * gap * 2.2, y(0.30)), (cx + s * gap, y(0.40))],
                        {"width": 1, "colour": dark},
                    )
                )
            p.garment(CLS["jacket"], parts, colour)

    if rng.random() < 0.8:  # shoes: one box per shoe
        scol = _dark(rng) if rng.random() < 0.4 else _bright(rng)
        for foot, side in ((foot_l, -1), (foot_r, 1)):
            sx0 = foot[0] - 0.045 * H + side * 0.015 * H
            p.garment(
                CLS["shoes"],
                [("ellipse", (sx0, foot[1] - 0.015 * H, sx0 + 0.09 * H, foot[1] + 0.035 * H), {})],
                scol,
            )
    if rng.random() < 0.45:  # sunglasses: two dark lenses and a bridge across the eyes
        ey, lw, lh = y(0.065), 0.045 * H, 0.028 * H
        lens = _dark(rng) if rng.random() < 0.7 else _bright(rng)
        p.garment(
            CLS["sunglass"],
            [
                ("ellipse", (cx - lw - 0.006 * H, ey, cx - 0.006 * H, ey + lh), {}),
                ("ellipse", (cx + 0.006 * H, ey, cx + lw + 0.006 * H, ey + lh), {}),
                (
                    "line",
                    [(cx - lw - 0.01 * H, ey + lh * 0.3), (cx + lw + 0.01 * H, ey + lh * 0.3)],
                    {"width": max(1, int(0.008 * H))},
                ),
            ],
            lens,
        )
    if rng.random() < 0.45:  # hat: crown plus brim (brimmed hat) or crown plus peak (cap)
        hcol = _bright(rng)
        crown = (cx - head_r * 0.9, y(-0.035), cx + head_r * 0.9, y(0.05))
        if rng.random() < 0.5:
            brim = (cx - head_r * 1.7, y(0.025), cx + head_r * 1.7, y(0.055))
        else:
            side = 1 if rng.random() < 0.5 else -1
            brim = (min(cx, cx + side * head_r * 1.9), y(0.03), max(cx, cx + side * head_r * 1.9), y(0.05))
        p.garment(CLS["hat"], [("ellipse", crown, {}), ("ellipse", brim, {})], hcol)
    if rng.random() < 0.4:  # bag held beside the body, with its handle
        hand = hand_l if rng.random() < 0.5 else hand_r
        bw, bh = rng.uniform(0.10, 0.16) * H, rng.uniform(0.09, 0.14) * H
        bx0, by0 = hand[0] - bw / 2, hand[1] + 0.01 * H
        bcol = _bright(rng)
        p.garment(
            CLS["bag"],
            [
                ("rectangle", (bx0, by0, bx0 + bw, by0 + bh), {}),
                (
                    "arc",
                    (bx0 + bw * 0.2, by0 - bh * 0.4, bx0 + bw * 0.8, by0 + bh * 0.4),
                    {"start": 180, "end": 360, "width": max(1, int(0.012 * H))},
                ),
            ],
            bcol,
        )


def render_scene(rng: np.random.Generator, width: int, height: int) -> tuple[Image.Image, list[Box]]:
    """One scene of ``width`` x ``height`` pixels and its garment boxes (pixel xyxy)."""
    image = _background(rng, width, height)
    painter = _Painter(image)
    n = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
    # Figures are placed in separate horizontal slots with some overlap allowed, back to front.
    slots = np.sort(rng.uniform(0, 1, n)) if n > 1 else np.array([rng.uniform(0.3, 0.7)])
    for i, slot in enumerate(slots):
        H = height * (rng.uniform(0.75, 1.05) if n == 1 else rng.uniform(0.5, 0.9))
        cx = width * (0.1 + 0.8 * slot)
        top = rng.uniform(-0.05 * H, max(0.0, height - H * 0.95))
        if n > 1 and i > 0:
            top = min(top + rng.uniform(0, 0.1) * H, height - H * 0.6)
        _figure(painter, rng, float(cx), float(top), float(H))
    boxes = painter.boxes()
    # A slight blur and sensor noise so edges are not pixel-perfect.
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 0.6))))
    arr = np.asarray(image, dtype=np.int16) + rng.normal(0, 3, (height, width, 3)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"), boxes


def scene_size(rng: np.random.Generator, imgsz: int) -> tuple[int, int]:
    """Long side ``imgsz``; portrait more often than landscape, like fashion photos."""
    short = round(imgsz * rng.uniform(0.75, 1.0))
    return (short, imgsz) if rng.random() < 0.7 else (imgsz, short)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """One independent stream per image, so image i is the same whatever N is."""
    return np.random.default_rng([seed, {"train": 0, "val": 1, "test": 2}[split], index])


def make_scene(seed: int, split: str, index: int, imgsz: int) -> tuple[Image.Image, list[Box]]:
    rng = scene_rng(seed, split, index)
    w, h = scene_size(rng, imgsz)
    return render_scene(rng, w, h)
