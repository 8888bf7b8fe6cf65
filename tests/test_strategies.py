"""Property tests: preprocessing holds up on any drawn image, and the strategies cover what they claim."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from PIL import Image

from detbench.runtimes.preprocess import preprocess
from detbench.testing.strategies import CONTENTS, MODES, batch_sizes, image_batches, images

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
