"""Image decoding, RGB conversion, letterbox and box mapping: parity with ultralytics, clear errors."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageFile

from detbench.data.images import MAX_PIXELS, load_image, to_rgb
from detbench.errors import ImageError
from detbench.runtimes.preprocess import LetterboxInfo, letterbox, preprocess, resize, unletterbox_boxes

from ultralytics.data.augment import LetterBox  # isort: skip  (after detbench: it sets the env first)
from ultralytics.utils.ops import scale_boxes  # isort: skip


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w x h greyscale pixels, followed by a token IDAT: tiny on disk."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


_ORIENT = {  # EXIF orientation -> what a viewer shows, written independently of Pillow
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _ultra_letterbox(rgb: np.ndarray, new_shape: int | tuple[int, int]) -> np.ndarray:
    """ultralytics' LetterBox on the BGR image, returned as RGB."""
    lb = LetterBox(new_shape=new_shape, auto=False, scaleup=True, center=True)
    return lb(image=np.ascontiguousarray(rgb[:, :, ::-1]))[:, :, ::-1]


class TestToRgb:
    def _grey(self, mode: str, values: list, dtype: str) -> Image.Image:
        arr = np.array([values], dtype=dtype)
        return Image.frombytes(mode, (len(values), 1), arr.tobytes())

    @pytest.mark.parametrize(
        ("mode", "dtype", "values", "expected"),
        [
            ("I;16", "<u2", [0, 257, 32768, 65535], [0, 1, 128, 255]),
            ("I;16B", ">u2", [0, 257, 32768, 65535], [0, 1, 128, 255]),
            ("I", "<i4", [-1, 32768, 65535, 70000], [0, 128, 255, 255]),
            ("F", "<f4", [-5.0, 127.6, 300.0, float("nan")], [0, 128, 255, 0]),
        ],
        ids=["I;16", "I;16B", "I", "F"],
    )
    def test_high_depth_modes_are_scaled_not_clamped(self, mode, dtype, values, expected):
        """16-bit data is scaled by 255/65535 (65535 -> 255, 32768 -> 128); F follows Pillow's 0..255."""
        out = to_rgb(self._grey(mode, values, dtype))
        assert out.mode == "RGB"
        assert np.asarray(out).tolist() == [[[v, v, v] for v in expected]]

    @pytest.mark.parametrize(
        ("make", "expected"),
        [
            (lambda: Image.new("L", (2, 1), 77), (77, 77, 77)),
            (lambda: Image.new("LA", (2, 1), (77, 0)), (77, 77, 77)),
            (lambda: Image.new("RGBA", (2, 1), (10, 20, 30, 0)), (10, 20, 30)),
            (lambda: Image.new("CMYK", (2, 1), (255, 0, 0, 0)), (0, 255, 255)),
            (lambda: Image.new("1", (2, 1), 1), (255, 255, 255)),
            (lambda: Image.new("YCbCr", (2, 1), (255, 128, 128)), (255, 255, 255)),
        ],
        ids=["L", "LA-alpha-dropped", "RGBA-alpha-dropped", "CMYK-cyan", "1", "YCbCr"],
    )
    def test_common_modes_convert(self, make, expected):
        """Each common mode converts to the RGB a reader expects; alpha is dropped like cv2.imread does."""
        out = to_rgb(make())
        assert out.mode == "RGB"
        assert out.size == (2, 1)
        assert out.getpixel((1, 0)) == expected

    @pytest.mark.parametrize("transparency", [None, 3, b"\x00\x80\xff\x00"], ids=["plain", "index", "bytes"])
    @pytest.mark.parametrize("mode", ["P", "PA"])
    def test_palette_images_use_their_palette(self, mode, transparency):
        """P and PA images map indices through their palette, with any transparency and no warning."""
        img = Image.frombytes(mode, (4, 1), bytes([0, 1, 2, 3] if mode == "P" else [0, 9, 1, 9, 2, 9, 3, 9]))
        img.putpalette(bytes(range(12)))
        if transparency is not None:
            img.info["transparency"] = transparency
        assert np.asarray(to_rgb(img)).tolist() == [[[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]]

    def test_zero_size_image_is_refused(self):
        """An in-memory image with no pixels raises ImageError naming its source."""
        with pytest.raises(ImageError, match=r"<mine>: zero-size image \(0x3\)"):
            to_rgb(Image.new("RGB", (0, 3)), source="<mine>")

    def test_unsupported_mode_is_refused(self):
        """A mode Pillow cannot turn into RGB raises ImageError naming the mode."""
        with pytest.raises(ImageError, match="unsupported pixel mode 'La'"):
            to_rgb(Image.new("La", (1, 1)))


class TestLoadImage:
    def test_png_round_trips_exactly(self, tmp_path):
        """A lossless RGB file comes back pixel for pixel."""
        arr = _noise(17, 23)
        (tmp_path / "a.png").write_bytes(_encode(Image.fromarray(arr), "PNG"))
        img = load_image(tmp_path / "a.png")
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), arr)

    def test_16bit_png_is_scaled(self, tmp_path):
        """A 16-bit greyscale PNG keeps its full range: 65535 -> 255, 32768 -> 128."""
        values = np.array([[0, 32768, 65535]], dtype="<u2")
        (tmp_path / "deep.png").write_bytes(_encode(Image.frombytes("I;16", (3, 1), values.tobytes()), "PNG"))
        assert np.asarray(load_image(tmp_path / "deep.png"))[0, :, 0].tolist() == [0, 128, 255]

    def test_normal_jpeg_decodes_at_full_size(self, tmp_path):
        """Ordinary photos are decoded exactly, never at a draft scale."""
        data = _encode(Image.fromarray(_noise(48, 64)), "JPEG", quality=90)
        (tmp_path / "p.jpg").write_bytes(data)
        img = load_image(tmp_path / "p.jpg")
        assert img.size == (64, 48)
        direct = Image.open(io.BytesIO(data)).convert("RGB")
        np.testing.assert_array_equal(np.asarray(img), np.asarray(direct))

    def test_draft_above_decodes_huge_jpeg_reduced(self, tmp_path):
        """With draft_above set, a JPEG over the limit decodes at a reduced scale but not below it."""
        (tmp_path / "big.jpg").write_bytes(_encode(Image.fromarray(_noise(256, 256)), "JPEG"))
        img = load_image(tmp_path / "big.jpg", draft_above=4000)
        assert 4000 <= img.width * img.height < 256 * 256

    @pytest.mark.parametrize("orientation", range(1, 9))
    def test_exif_orientation_png(self, tmp_path, orientation):
        """Every EXIF orientation in a PNG is applied exactly (lossless, all pixels distinct)."""
        arr = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(3, 4, 3) * 7
        exif = Image.Exif()
        exif[0x0112] = orientation
        (tmp_path / "o.png").write_bytes(_encode(Image.fromarray(arr), "PNG", exif=exif))
        got = np.asarray(load_image(tmp_path / "o.png"))
        np.testing.assert_array_equal(got, _ORIENT[orientation](arr))

    @pytest.mark.parametrize("orientation", range(1, 9))
    def test_exif_orientation_jpeg(self, tmp_path, orientation):
        """Every EXIF orientation in a JPEG is applied (compared on 16-pixel colour blocks)."""
        colours = np.array(
            [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 0], [0, 255, 255], [255, 0, 255]]],
            dtype=np.uint8,
        )
        arr = colours.repeat(16, axis=0).repeat(16, axis=1)
        exif = Image.Exif()
        exif[0x0112] = orientation
        (tmp_path / "o.jpg").write_bytes(_encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif))
        got = np.asarray(load_image(tmp_path / "o.jpg")).astype(float)
        want = _ORIENT[orientation](colours).astype(float)
        h, w = want.shape[:2]
        assert got.shape == (h * 16, w * 16, 3)
        blocks = got.reshape(h, 16, w, 16, 3).mean(axis=(1, 3))
        np.testing.assert_allclose(blocks, want, atol=25)


def _corrupt_cases() -> list:
    jpeg = _encode(Image.fromarray(_noise(64, 64)), "JPEG")
    png = _encode(Image.fromarray(_noise(64, 64)), "PNG")
    ico = _encode(Image.new("RGB", (16, 16)), "ICO")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>\n'
    cases = [  # (id, file name, bytes or None for no file, or "dir", expected words in the reason)
        ("missing", "gone.jpg", None, "not found"),
        ("directory", "folder.jpg", "dir", "not a regular file"),
        ("empty", "empty.jpg", b"", "empty file"),
        ("truncated-jpeg", "cut.jpg", jpeg[: len(jpeg) // 2], "truncated"),
        ("truncated-png", "cut.png", png[: len(png) // 2], "truncated"),
        ("text-named-jpg", "notes.jpg", b"this is not a picture\n", "not an image"),
        ("svg", "vector.svg", svg, "SVG"),
        ("ico", "icon.ico", ico, "unsupported image format ICO"),
        ("random-bytes", "noise.bin", _noise(16, 16, 5).tobytes(), "not an image"),
        ("corrupt-png-header", "head.png", png[:8] + b"\x00" * 20, "corrupt or truncated PNG header"),
        ("zero-size-png", "zero.png", _png_header_only(0, 5), "zero-size image"),
    ]
    return [pytest.param(*c[1:], id=c[0]) for c in cases]


class TestLoadImageErrors:
    @pytest.mark.parametrize(("name", "content", "reason"), _corrupt_cases())
    def test_bad_file_raises_image_error(self, tmp_path, name, content, reason):
        """Each kind of bad file raises ImageError whose message names the file and the problem."""
        path = tmp_path / name
        if content == "dir":
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        with pytest.raises(ImageError) as info:
            load_image(path)
        assert name in str(info.value)
        assert reason in str(info.value)
        assert info.value.path == path

    @pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
    def test_truncation_raises_even_if_pillow_is_told_to_allow_it(self, tmp_path, monkeypatch, fmt):
        """A caller's global LOAD_TRUNCATED_IMAGES=True does not let a half image through, and survives."""
        data = _encode(Image.fromarray(_noise(64, 64)), fmt)
        (tmp_path / "cut").write_bytes(data[: len(data) // 2])
        monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
        with pytest.raises(ImageError, match="truncated"):
            load_image(tmp_path / "cut")
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True

    @pytest.mark.parametrize(
        ("w", "h"),
        [(10_000, 8_000), (10_000, 10_000), (100_000, 100_000)],
        ids=["over-ours", "over-pillow-warning", "over-pillow-error"],
    )
    def test_decompression_bomb_refused_from_header(self, tmp_path, monkeypatch, w, h):
        """A huge header is refused quickly, without decoding and without a warning escaping."""
        assert w * h > MAX_PIXELS
        (tmp_path / "bomb.png").write_bytes(_png_header_only(w, h))
        loads = []
        monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self))
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ImageError) as info:
                load_image(tmp_path / "bomb.png")
        assert time.perf_counter() - start < 2.0
        assert "bomb.png" in str(info.value)
        assert "limit" in str(info.value)
        assert loads == []
        assert caught == []

    def test_max_pixels_argument_overrides_the_limit(self, tmp_path):
        """A small image over a caller's lower limit is refused, and loads without it."""
        (tmp_path / "a.png").write_bytes(_encode(Image.fromarray(_noise(100, 100)), "PNG"))
        with pytest.raises(ImageError, match="exceeds the limit of 5000 pixels"):
            load_image(tmp_path / "a.png", max_pixels=5000)
        assert load_image(tmp_path / "a.png").size == (100, 100)


class TestLetterbox:
    @pytest.mark.parametrize(
        ("h", "w", "imgsz"),
        [
            (96, 64, 128),
            (64, 96, 128),
            (30, 20, 128),
            (128, 128, 128),
            (1, 300, 128),
            (333, 517, 128),
            (127, 129, 128),
            (480, 640, 160),
            (50, 70, (96, 160)),
            (300, 80, (160, 96)),
        ],
        ids=[
            "portrait",
            "landscape",
            "upscale",
            "exact",
            "thin",
            "odd",
            "near-square",
            "vga",
            "rect-target",
            "rect-target-tall",
        ],
    )
    def test_matches_ultralytics_pixel_exactly(self, h, w, imgsz):
        """Our letterbox of an RGB image equals ultralytics' LetterBox of the BGR image, reversed."""
        rgb = _noise(h, w, seed=h * 1000 + w)
        out, info = letterbox(rgb, imgsz)
        np.testing.assert_array_equal(out, _ultra_letterbox(rgb, imgsz))
        assert info.mode == "letterbox"
        assert info.new_shape == out.shape[:2]

    @given(
        h=st.integers(1, 400), w=st.integers(1, 400), s=st.integers(8, 160), seed=st.integers(0, 2**32 - 1)
    )
    def test_matches_ultralytics_on_any_shape(self, h, w, s, seed):
        """Parity with LetterBox holds for any image and target size."""
        rgb = _noise(h, w, seed)
        np.testing.assert_array_equal(letterbox(rgb, s)[0], _ultra_letterbox(rgb, s))

    def test_info_describes_the_mapping(self):
        """A 100x50 (h x w) image into 128: ratio 1.28, content 128x64, 32 pixels of padding left."""
        out, info = letterbox(_noise(100, 50), 128)
        assert info == LetterboxInfo((100, 50), (128, 128), (1.28, 1.28), (32, 0), "letterbox")
        assert info.resized_shape == (128, 64)
        assert (out[:, :32] == 114).all()
        assert (out[:, 96:] == 114).all()

    def test_pad_value(self):
        """The padding takes the requested grey."""
        out, _ = letterbox(_noise(10, 40), 40, pad_value=0)
        assert (out[:15] == 0).all()

    @pytest.mark.parametrize("imgsz", [0, -1, (0, 5), (5,), "128", True, 12.5], ids=repr)
    def test_bad_imgsz_raises(self, imgsz):
        """A size that is not a positive int or (h, w) pair is refused with its value in the message."""
        with pytest.raises(ValueError, match="imgsz"):
            letterbox(_noise(4, 4), imgsz)

    @pytest.mark.parametrize(
        "arr",
        [
            np.zeros((4, 4), np.uint8),
            np.zeros((4, 4, 4), np.uint8),
            np.zeros((4, 4, 3), np.float32),
            np.zeros((0, 4, 3), np.uint8),
        ],
        ids=["2d", "4-channel", "float", "empty"],
    )
    def test_bad_array_raises(self, arr):
        """Only non-empty HxWx3 uint8 arrays are accepted."""
        with pytest.raises(ValueError, match="rgb"):
            letterbox(arr, 32)

    def test_resize_stretches_without_padding(self):
        """resize fills the whole target, records per-axis ratios, and leaves an exact size untouched."""
        rgb = _noise(30, 60)
        out, info = resize(rgb, (90, 45))
        assert out.shape == (90, 45, 3)
        assert info == LetterboxInfo((30, 60), (90, 45), (0.75, 3.0), (0, 0), "resize")
        same, _ = resize(rgb, (30, 60))
        np.testing.assert_array_equal(same, rgb)


class TestUnletterbox:
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize(
        ("h", "w", "s"),
        [(96, 64, 128), (64, 96, 128), (333, 517, 128), (1, 300, 64), (128, 128, 128), (20, 30, 160)],
    )
    def test_matches_scale_boxes(self, h, w, s, dtype):
        """Letterbox boxes map back exactly as ultralytics' scale_boxes maps them, padding and all."""
        _, info = letterbox(_noise(h, w), s)
        boxes = np.sort(np.random.default_rng(h + w).uniform(-10, s + 10, (50, 2, 2)), axis=1)
        boxes = boxes.transpose(0, 2, 1).reshape(50, 4)[:, [0, 2, 1, 3]].astype(dtype)  # x0 y0 x1 y1
        got = unletterbox_boxes(boxes, info)
        want = scale_boxes((s, s), boxes.copy(), (h, w))
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)

    def test_does_not_modify_its_input(self):
        """The boxes passed in are left as they were."""
        _, info = letterbox(_noise(50, 100), 64)
        boxes = np.array([[10.0, 20.0, 30.0, 40.0]])
        unletterbox_boxes(boxes, info)
        assert boxes.tolist() == [[10.0, 20.0, 30.0, 40.0]]

    def test_inverts_resize(self):
        """For resize mode, boxes scaled forward come back to where they were."""
        _, info = resize(_noise(30, 60), (90, 45))
        orig = np.array([[0.0, 0.0, 60.0, 30.0], [10.5, 3.25, 20.0, 29.0]])
        forward = orig * np.array([0.75, 3.0, 0.75, 3.0])
        np.testing.assert_allclose(unletterbox_boxes(forward, info), orig, rtol=1e-12)

    def test_clips_to_the_original_image(self):
        """Boxes reaching into the padding or beyond are clipped to the original image."""
        _, info = letterbox(_noise(50, 100), 100)  # content rows 25..75
        got = unletterbox_boxes(np.array([[-20.0, 0.0, 130.0, 100.0]]), info)
        assert got.tolist() == [[0.0, 0.0, 100.0, 50.0]]

    def test_empty_and_bad_shapes(self):
        """No boxes gives no boxes; a wrongly shaped array is refused."""
        _, info = letterbox(_noise(5, 5), 8)
        assert unletterbox_boxes(np.zeros((0, 4), np.float32), info).shape == (0, 4)
        with pytest.raises(ValueError, match=r"\(K, 4\)"):
            unletterbox_boxes(np.zeros((3, 5)), info)


class TestPreprocess:
    def test_mixed_inputs_give_one_nchw_batch(self, tmp_path):
        """A PIL image, a path and an array become one contiguous float32 (N, 3, S, S) batch in [0, 1]."""
        arrs = [_noise(40, 30, 1), _noise(20, 50, 2), _noise(64, 64, 3)]
        Image.fromarray(arrs[1]).save(tmp_path / "b.png")
        x, infos = preprocess([Image.fromarray(arrs[0]).convert("RGBA"), tmp_path / "b.png", arrs[2]], 64)
        assert x.shape == (3, 3, 64, 64)
        assert x.dtype == np.float32
        assert x.flags.c_contiguous
        assert x.min() >= 0.0
        assert x.max() <= 1.0
        assert [i.orig_shape for i in infos] == [(40, 30), (20, 50), (64, 64)]
        for xi, arr in zip(x, arrs):
            expected = letterbox(arr, 64)[0].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
            np.testing.assert_array_equal(xi, expected)

    def test_channels_are_rgb(self):
        """A pure red image puts 1.0 in channel 0 only."""
        x, _ = preprocess([Image.new("RGB", (8, 8), (255, 0, 0))], 8)
        assert (x[0, 0] == 1).all()
        assert (x[0, 1:] == 0).all()

    def test_mean_std_normalise(self):
        """mean/std apply (x - mean) / std per channel."""
        imgs = [_noise(20, 30)]
        plain, _ = preprocess(imgs, 32)
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        norm, _ = preprocess(imgs, 32, mean=mean, std=std)
        want = (plain - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
        np.testing.assert_allclose(norm, want, rtol=1e-6, atol=1e-6)
        assert norm.dtype == np.float32

    def test_resize_mode(self):
        """mode='resize' stretches every image to the target and says so in its info."""
        x, infos = preprocess([_noise(10, 40), _noise(40, 10)], (16, 24), mode="resize")
        assert x.shape == (2, 3, 16, 24)
        assert all(i.mode == "resize" and i.pad == (0, 0) for i in infos)

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"mode": "crop"}, ValueError, "mode"),
            ({"imgsz": 0}, ValueError, "imgsz"),
            ({"imgsz": -32}, ValueError, "imgsz"),
            ({"images": []}, ValueError, "empty"),
            ({"mean": (0.5, 0.5)}, ValueError, "mean"),
            ({"std": (0.5, 0.0, 0.5)}, ValueError, "std"),
            ({"images": [42]}, TypeError, r"images\[0\]"),
            ({"images": [np.zeros((4, 4), np.uint8)]}, ValueError, r"images\[0\]"),
            ({"images": np.zeros((4, 4, 3), np.uint8)}, TypeError, "sequence"),
        ],
        ids=[
            "mode",
            "imgsz-zero",
            "imgsz-negative",
            "empty",
            "mean-length",
            "std-zero",
            "not-an-image",
            "bad-array",
            "bare-array",
        ],
    )
    def test_bad_arguments_raise(self, kwargs, error, match):
        """Bad arguments raise with a message naming the argument."""
        args = {"images": [_noise(4, 4)], "imgsz": 8, **kwargs}
        with pytest.raises(error, match=match):
            preprocess(args.pop("images"), **args)

    def test_bad_path_raises_image_error(self, tmp_path):
        """A path that cannot be decoded surfaces as ImageError naming the file."""
        (tmp_path / "x.jpg").write_text("nope")
        with pytest.raises(ImageError, match=r"x\.jpg"):
            preprocess([tmp_path / "x.jpg"])
