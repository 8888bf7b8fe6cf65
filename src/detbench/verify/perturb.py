"""Deliberately broken models, to prove the equivalence checks can fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def conv_weights(model) -> list[tuple[str, str]]:
    """(node name, weight initializer name) of every Conv in graph order."""
    inits = {i.name for i in model.graph.initializer}
    return [(n.name, n.input[1]) for n in model.graph.node if n.op_type == "Conv" and n.input[1] in inits]


def perturb_conv_weight(
    src: Path, dst: Path, *, node: str, delta: float, index: int = 0
) -> tuple[str, float]:
    """Copy the ONNX model at ``src`` to ``dst`` with one weight of Conv ``node`` (a name fragment)
    shifted by ``delta``; returns (the node's full name, the weight's original value)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    matches = [(n, w) for n, w in conv_weights(model) if node in n]
    if not matches:
        raise ValueError(f"no Conv node matching {node!r} in {src}")
    node_name, weight_name = matches[0]
    init = next(i for i in model.graph.initializer if i.name == weight_name)
    arr = numpy_helper.to_array(init).copy()
    flat = arr.reshape(-1)
    original = float(flat[index])
    flat[index] = np.float32(original + delta)
    init.CopyFrom(numpy_helper.from_array(arr, weight_name))
    onnx.save(model, str(dst))
    return node_name, original
