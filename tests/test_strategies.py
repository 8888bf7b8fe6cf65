"""Property tests: preprocessing holds up on any drawn image, the strategies cover what they claim,
and the "had detections" floor counts the drawn set that fits the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from PIL import Image

from detbench.runtimes.preprocess import preprocess
from detbench.testing.drawn import SYNTHETIC_SET, USER_SET, DrawnCount, drawn_set, floor_shortfall
from detbench.testing.strategies import (
    CONTENTS,
    MODES,
    PERTURBED_MODES,
    VAL_CONTENT,
    batch_sizes,
    image_batches,
    images,
    perturbed_images,
)

# Generation only: a shrunk example is not needed to prove one exists.
_FIND = settings(
    max_examples=500,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@given(img=images(), size=st.sampled_from([32, 64, 96]), mode=st.sampled_from(["letterbox", "resize"]))
def test_preprocess_any_image_gives_a_finite_unit_tensor(img, size, mode):
    """Any drawn image, in any mode and shape, preprocesses to a (1, 3, S, S) float32 tensor in [0, 1]."""
    x, infos = preprocess([img], size, mode=mode)
    assert x.shape == (1, 3, size, size)
    assert x.dtype == np.float32
    assert x.flags.c_contiguous
    assert np.isfinite(x).all()
    assert x.min() >= 0.0
    assert x.max() <= 1.0
    assert infos[0].orig_shape == (img.height, img.width)


@given(data=st.data(), max_batch=st.integers(1, 6))
def test_batches_have_the_drawn_size(data, max_batch):
    """image_batches draws 1..max_batch images and preprocess keeps one row per image."""
    batch = data.draw(image_batches(max_batch=max_batch, max_side=48))
    assert 1 <= len(batch) <= max_batch
    assert all(isinstance(img, Image.Image) for img in batch)
    x, infos = preprocess(batch, 32)
    assert x.shape == (len(batch), 3, 32, 32)
    assert len(infos) == len(batch)


@given(n=batch_sizes(5))
def test_batch_sizes_stay_in_range(n):
    """batch_sizes(k) draws from 1..k."""
    assert 1 <= n <= 5


@given(img=images(min_side=3, max_side=40, modes=("I;16", "P"), contents=("noise", "gradient")))
def test_arguments_bound_what_is_drawn(img):
    """Sides, modes and contents stay within the arguments given."""
    assert 3 <= img.width <= 40
    assert 3 <= img.height <= 40
    assert img.mode in ("I;16", "P")
    assert img.info["detbench.content"] in ("noise", "gradient")


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_is_drawn(mode):
    """Each mode in MODES is reachable from the default strategy."""
    assert find(images(max_side=8), lambda img: img.mode == mode, settings=_FIND).mode == mode


@pytest.mark.parametrize("content", CONTENTS)
def test_every_content_is_drawn(content):
    """Each content kind in CONTENTS is reachable from the default strategy."""
    img = find(images(max_side=16), lambda img: img.info["detbench.content"] == content, settings=_FIND)
    assert img.info["detbench.content"] == content


def test_16bit_images_use_the_full_range():
    """I;16 images hold genuine 16-bit values, not 8-bit ones in a wider type."""
    img = find(
        images(min_side=8, max_side=16, modes=("I;16",), contents=("noise",)),
        lambda img: True,
        settings=_FIND,
    )
    assert np.asarray(img).max() > 255


def test_very_different_aspect_ratios_are_drawn():
    """Width and height are drawn independently, so extreme aspect ratios occur."""
    wide = find(images(max_side=64), lambda img: img.width >= 8 * img.height, settings=_FIND)
    tall = find(images(max_side=64), lambda img: img.height >= 8 * img.width, settings=_FIND)
    assert wide.width >= 8 * wide.height
    assert tall.height >= 8 * tall.width


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_side": 0},
        {"min_side": 9, "max_side": 8},
        {"modes": ("LAB",)},
        {"modes": ()},
        {"contents": ("plasma",)},
    ],
    ids=["min-side-zero", "min-over-max", "unknown-mode", "no-modes", "unknown-content"],
)
def test_bad_arguments_are_refused(kwargs):
    """Invalid strategy arguments raise InvalidArgument up front."""
    with pytest.raises(InvalidArgument):
        images(**kwargs)


# -- perturbed_images: the user's own val images ----------------------------------------------------


@pytest.fixture(scope="module")
def val_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three tiny photos of a YOLO val split: synthetic scenes saved as PNG and JPEG, with labels."""
    from detbench.data.synth import make_scene

    root = tmp_path_factory.mktemp("userdata")
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    paths = []
    for i, (imgsz, suffix) in enumerate([(64, ".png"), (96, ".jpg"), (80, ".png")]):
        image, boxes = make_scene(7, "val", i, imgsz)
        path = root / "images" / "val" / f"im{i}{suffix}"
        image.save(path)
        (root / "labels" / "val" / f"im{i}.txt").write_text(
            "".join(b.yolo_line(image.width, image.height) + "\n" for b in boxes)
        )
        paths.append(path)
    return paths


def _draw(strategy: st.SearchStrategy, n: int = 40, seed: int = 20) -> list:
    """``n`` examples of ``strategy`` under a fixed seed, as (mode, size, pixel bytes, info)."""
    drawn = []

    @hypothesis_seed(seed)
    @settings(_FIND, max_examples=n)
    @given(img=strategy)
    def collect(img):
        drawn.append((img.mode, img.size, img.tobytes(), dict(img.info)))

    collect()
    return drawn


def test_perturbed_images_are_varied_valid_inputs(val_files):
    """Perturbed val images come in every mode and many sizes, within the sides asked, from every
    file, and each preprocesses to a finite (1, 3, 32, 32) tensor."""
    seen_modes, seen_sizes, seen_sources, jpeg = set(), set(), set(), False
    strategy = perturbed_images(val_files, min_side=20, max_side=200)
    for mode, size, _, info in _draw(strategy, n=60):
        assert mode in PERTURBED_MODES
        assert min(size) >= 20 and max(size) <= 200
        assert info["detbench.content"] == VAL_CONTENT
        seen_modes.add(mode)
        seen_sizes.add(size)
        seen_sources.add(info["detbench.source"])
    assert seen_modes == set(PERTURBED_MODES)
    assert len(seen_sizes) >= 20
    assert seen_sources == {str(p) for p in val_files}
    for img in _images(strategy, n=20):
        x, _ = preprocess([img], 32)
        assert x.shape == (1, 3, 32, 32)
        assert np.isfinite(x).all()
        jpeg |= img.format == "JPEG" or "jfif" in img.info
    assert jpeg, "no example went through a JPEG re-encode"


def _images(strategy: st.SearchStrategy, n: int) -> list[Image.Image]:
    drawn = []

    @hypothesis_seed(3)
    @settings(_FIND, max_examples=n)
    @given(img=strategy)
    def collect(img):
        drawn.append(img)

    collect()
    return drawn


def test_perturbed_images_are_deterministic_under_a_seed(val_files):
    """The same seed draws the same pixels, even from a fresh strategy (a fresh decode cache)."""
    first = _draw(perturbed_images(val_files, min_side=16, max_side=96))
    again = _draw(perturbed_images(val_files, min_side=16, max_side=96))
    assert [d[:3] for d in first] == [d[:3] for d in again]
    assert len({d[2] for d in first}) > 1


@pytest.mark.parametrize(
    "kwargs",
    [{"paths": []}, {"min_side": 0}, {"modes": ("CMYK",)}, {"modes": ()}],
    ids=["no-paths", "min-side-zero", "unsupported-mode", "no-modes"],
)
def test_perturbed_images_refuse_bad_arguments(val_files, kwargs):
    """No files, bad sides or a mode the pipeline does not take raise InvalidArgument up front."""
    with pytest.raises(InvalidArgument):
        perturbed_images(**{"paths": val_files, **kwargs})


# -- the "had detections" floor: which drawn set it applies to ---------------------------------------


def test_floor_applies_to_the_users_images_when_given():
    """With --detbench-data only the user's set counts: the synthetic scenes may find nothing."""
    counts = {SYNTHETIC_SET: DrawnCount(25, 0), USER_SET: DrawnCount(25, 20)}
    assert floor_shortfall(counts, user_data=True) is None
    counts = {SYNTHETIC_SET: DrawnCount(25, 25), USER_SET: DrawnCount(25, 3)}
    assert floor_shortfall(counts, user_data=True) == (
        f"only 3 of 25 images drawn from {USER_SET} had a detection (need 50%)"
    )
    assert floor_shortfall({SYNTHETIC_SET: DrawnCount(50, 50)}, user_data=True) == (
        f"no examples were drawn from {USER_SET}"
    )


def test_floor_applies_to_the_synthetic_scenes_by_default():
    """Without --detbench-data the synthetic scenes are the set that fits (the baseline's classes)."""
    assert floor_shortfall({SYNTHETIC_SET: DrawnCount(50, 25)}, user_data=False) is None
    assert floor_shortfall({SYNTHETIC_SET: DrawnCount(50, 24)}, user_data=False) == (
        f"only 24 of 50 images drawn from {SYNTHETIC_SET} had a detection (need 50%)"
    )


def test_drawn_set_tells_user_images_from_scenes(val_files):
    """drawn_set reads the content tag the strategies leave on each image."""
    user = find(perturbed_images(val_files), lambda _: True, settings=_FIND)
    scene = find(images(min_side=16, max_side=32, contents=("scene",)), lambda _: True, settings=_FIND)
    assert (drawn_set(user), drawn_set(scene)) == (USER_SET, SYNTHETIC_SET)
