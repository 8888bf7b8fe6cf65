"""Accuracy parity: mAP50, mAP50-95 and per-class mAP50 on the val split through every backend,
scored with ultralytics' metric code."""

from __future__ import annotations

import pytest

from detbench.runtimes.backends import BaseBackend
from detbench.verify.accuracy import evaluate
from detbench.verify.compare import TOLERANCES, OutputMismatch, assert_accuracy_close

pytestmark = pytest.mark.equivalence


@pytest.fixture(scope="session")
def reference_accuracy(reference: BaseBackend, dataset, model_info, val_limit) -> dict:
    # Image by image; the backends below run batches of 8, so the pytorch row checks that batching
    # leaves the scores alone.
    return evaluate(reference, dataset, imgsz=model_info.imgsz, limit=val_limit, batch=1).to_dict()


def test_reference_agrees_with_ultralytics_val(
    reference_accuracy: dict, baseline, dataset_yaml, model_info, val_limit
) -> None:
    """Our adapter path scores the baseline within 0.01 of YOLO(weights).val() on the same split and
    the same inputs: square letterboxed images (``rect=False``), as our preprocessing feeds every
    backend, not YOLO.val()'s default rectangular batches, whose padding a model may score differently
    (a 5-epoch YOLO26n: mAP50 0.236 with them, 0.258 without, ours 0.259)."""
    if val_limit is not None:
        pytest.skip("YOLO.val() scores the whole split; --detbench-val-images limits ours")
    from detbench.model.train import validate

    theirs = validate(baseline, dataset_yaml, model_info.imgsz, rect=False)
    assert reference_accuracy["mAP50"] == pytest.approx(float(theirs.box.map50), abs=0.01)
    assert reference_accuracy["mAP50-95"] == pytest.approx(float(theirs.box.map), abs=0.01)


@pytest.fixture(scope="session")
def scored_references(reference: BaseBackend, reference_accuracy: dict) -> dict[str, dict]:
    """The references' accuracy scored so far, by name: each is scored once a session."""
    return {reference.name: reference_accuracy}


@pytest.fixture(scope="session")
def backend_reference_accuracy(
    backend_reference: BaseBackend, scored_references: dict[str, dict], dataset, model_info, val_limit
) -> dict:
    """The accuracy of what ``backend`` is verified against: ``reference_accuracy`` for a raw head, the
    model's own end2end forward's (image by image) for an end2end export, since the one-to-one head
    is another head than the one-to-many reference's and their mAP differ by design."""
    name = backend_reference.name
    if name not in scored_references:
        scored_references[name] = evaluate(
            backend_reference, dataset, imgsz=model_info.imgsz, limit=val_limit, batch=1
        ).to_dict()
    return scored_references[name]


def test_accuracy_matches_reference(
    backend: BaseBackend, backend_reference_accuracy: dict, dataset, model_info, val_limit, record_property
) -> None:
    """fp32 backends within 0.005 of their reference; INT8 within 0.02 overall, no class 0.05 below."""
    out = evaluate(backend, dataset, imgsz=model_info.imgsz, limit=val_limit).to_dict()
    record_property("mAP50", out["mAP50"])
    record_property("mAP50-95", out["mAP50-95"])
    assert_accuracy_close(backend_reference_accuracy, out, TOLERANCES[backend.name], label=backend.name)


def test_accuracy_check_catches_a_collapsed_model(reference_accuracy: dict) -> None:
    """A model that scores zero (what naive INT8 did) fails even the loosest bound."""
    dead = {
        **reference_accuracy,
        "mAP50": 0.0,
        "mAP50-95": 0.0,
        "per_class": {k: {**v, "mAP50": 0.0} for k, v in reference_accuracy["per_class"].items()},
    }
    with pytest.raises(OutputMismatch, match="mAP50"):
        assert_accuracy_close(reference_accuracy, dead, TOLERANCES["onnxruntime-int8"])
