"""The equivalence checks can fail: one perturbed convolution weight in the ONNX model is caught."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detbench.data.images import load_image
from detbench.runtimes.backends import create
from detbench.runtimes.preprocess import preprocess
from detbench.verify.compare import TOLERANCES, OutputMismatch, assert_outputs_close
from detbench.verify.perturb import perturb_conv_weight

pytestmark = pytest.mark.equivalence

# The 3x3 conv feeding the stride-8 class logits, and one deep in the backbone.
NODES = ["/model.22/cv3.0/cv3.0.2/Conv", "/model.6/m.0/cv1/conv/Conv"]


@pytest.fixture(scope="module")
def val_batch(dataset, model_info) -> np.ndarray:
    return preprocess([load_image(p) for p in dataset.images("val")[:16]], model_info.imgsz)[0]


@pytest.mark.parametrize("node", NODES)
def test_perturbed_onnx_fails_equivalence(workbench, reference, val_batch, tmp_path: Path, node: str) -> None:
    """A 0.05 shift of one weight makes the raw-head comparison fail with a located, readable message."""
    broken = tmp_path / "broken.onnx"
    perturb_conv_weight(workbench.exporter.get("onnx").path, broken, node=node, delta=0.05)
    backend = create("onnxruntime")
    backend.load(broken)
    with pytest.raises(OutputMismatch) as info:
        assert_outputs_close(
            reference.run(val_batch),
            backend.run(val_batch),
            TOLERANCES["onnxruntime"],
            label="perturbed onnxruntime",
        )
    msg = str(info.value)
    assert "outputs differ beyond" in msg and "worst excess at image" in msg and "channel" in msg
    assert "max abs" in msg and "max rel" in msg


def test_unperturbed_copy_passes(workbench, reference, val_batch, tmp_path: Path) -> None:
    """Control: the same procedure with a zero shift passes, so the failure above is the perturbation."""
    same = tmp_path / "same.onnx"
    perturb_conv_weight(workbench.exporter.get("onnx").path, same, node=NODES[0], delta=0.0)
    backend = create("onnxruntime")
    backend.load(same)
    assert_outputs_close(reference.run(val_batch), backend.run(val_batch), TOLERANCES["onnxruntime"])
