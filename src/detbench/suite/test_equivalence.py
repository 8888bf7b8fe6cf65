"""Cross-backend equivalence on inputs nobody hand-picked: raw head, detections, determinism.

Each backend is compared with its reference (the ``backend_reference`` fixture): eager PyTorch for a
raw head, the model's own end2end forward for an end2end export (which has no raw head, so the raw
tests skip it). The reference's detections come from ultralytics' own postprocessing
(``verify.reference``), the backend's from its own (``runtimes.end2end.to_detections``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, target
from hypothesis import strategies as st

from detbench.plugin.fixtures import backend_params
from detbench.runtimes.backends import REGISTRY, BaseBackend
from detbench.runtimes.end2end import to_detections
from detbench.runtimes.preprocess import preprocess
from detbench.testing.drawn import DrawnCount, drawn_set, floor_shortfall
from detbench.testing.strategies import SCENE_SIDES, image_batches, perturbed_images, suite_scenes
from detbench.verify.compare import TOLERANCES, assert_detections_match, assert_outputs_close
from detbench.verify.reference import reference_detections

pytestmark = pytest.mark.equivalence


def test_backend_fixture_covers_the_registry() -> None:
    """A backend added to the registry is tested automatically: the fixture's params are the registry."""
    assert [p.values[0] for p in backend_params()] == list(REGISTRY)
    assert set(TOLERANCES) == set(REGISTRY), "every backend needs a row in the tolerance table"


@given(data=st.data())
def test_raw_head_matches_pytorch(raw_backend: BaseBackend, reference: BaseBackend, model_info, data) -> None:
    """Raw head output on the identical preprocessed batch is within the backend's tolerance."""
    backend = raw_backend
    batch = data.draw(image_batches(max_batch=8, max_side=512), label="batch")
    x, _ = preprocess(batch, model_info.imgsz)
    # The reference runs image by image, the candidate the whole batch: batched inference must not
    # change the numbers either (for the pytorch row that is all this checks).
    ref = reference.run_batched(x, batch=1)
    assert_outputs_close(ref, backend.run_batched(x), TOLERANCES[backend.name], label=backend.name)


# Drawn examples per backend and set (detbench.testing.drawn): an example without detections checks
# nothing, so the test after the @given one requires a share of hits in the set that fits the model.
_DRAWN: dict[str, dict[str, DrawnCount]] = {}
_SCENES = suite_scenes()


@pytest.fixture(scope="module")
def drawn_images(user_val_images):
    """Synthetic scenes, and with --detbench-data also the user's val images, perturbed."""
    if not user_val_images:
        return _SCENES
    return st.one_of(_SCENES, perturbed_images(user_val_images, **SCENE_SIDES))


def _detections(backend: BaseBackend, reference: BaseBackend, x, infos, names, *, batch: int | None = None):
    """(the reference's detections, the backend's) on ``x``: the reference image by image."""
    ref = reference_detections(reference.run_batched(x, batch=1), infos, names, output=reference.output)
    raw = backend.run(x) if batch is None else backend.run_batched(x, batch=batch)
    return ref, to_detections(raw, infos, names, output=backend.output)


@given(data=st.data())
def test_detections_match_pytorch(
    backend: BaseBackend, backend_reference: BaseBackend, model_info, drawn_images, data
) -> None:
    """After its postprocess (NMS, or none for end2end), every detection has a same-class partner in
    its reference's with IoU and score within tolerance."""
    image = data.draw(drawn_images, label="image")
    x, infos = preprocess([image], model_info.imgsz)
    ref, out = _detections(backend, backend_reference, x, infos, model_info.names)
    n, drawn_from = len(ref[0]), drawn_set(image)
    event(f"reference detections on {drawn_from}: {min(n, 5)}{'+' if n >= 5 else ''}")
    target(float(n), label="reference detections")
    count = _DRAWN.setdefault(backend.name, {}).setdefault(drawn_from, DrawnCount())
    count.examples += 1
    count.hits += n > 0
    assert_detections_match(ref, out, TOLERANCES[backend.name], label=backend.name)


def test_detection_examples_had_detections(
    backend: BaseBackend, backend_reference: BaseBackend, model_info, drawn_images, user_val_images
) -> None:
    """At least half the examples drawn above from the set that fits the model (the user's val
    images with --detbench-data, else the synthetic scenes) gave the reference a detection."""
    if backend.name not in _DRAWN:
        # The draws above ran in another process (pytest-xdist) or were deselected: draw here, the same
        # examples (a seeded profile) through the same checks.
        test_detections_match_pytorch(
            backend=backend,
            backend_reference=backend_reference,
            model_info=model_info,
            drawn_images=drawn_images,
        )
    shortfall = floor_shortfall(_DRAWN[backend.name], user_data=bool(user_val_images))
    assert shortfall is None, shortfall


def test_detections_match_on_val_images(
    backend: BaseBackend, backend_reference: BaseBackend, model_info, dataset
) -> None:
    """The same on the first 32 val images (batches of 8), where the baseline finds many objects."""
    from detbench.data.images import load_image

    paths = dataset.images("val")[:32]
    x, infos = preprocess([load_image(p) for p in paths], model_info.imgsz)
    ref, out = _detections(backend, backend_reference, x, infos, model_info.names, batch=8)
    assert sum(len(d) for d in ref) > 32, "the baseline should detect objects on val images"
    assert_detections_match(ref, out, TOLERANCES[backend.name], label=backend.name)


def test_repeated_runs_are_bit_identical(backend: BaseBackend, model_info, dataset) -> None:
    """Same backend, same input, fixed threads: the same bits every time."""
    from detbench.data.images import load_image

    x, _ = preprocess([load_image(p) for p in dataset.images("val")[:1]], model_info.imgsz)
    first = backend.run(x)
    for _ in range(3):
        assert np.array_equal(first, backend.run(x))
