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


def add_input_compute(src: Path, dst: Path, *, matmuls: int, width: int | None = None) -> Path:
    """Copy the ONNX model at ``src`` to ``dst`` with a chain of ``matmuls`` extra MatMuls on its input.

    A *real* slower artifact, for calibrating the gate and proving budgets bind: the chain reads the
    input (so no runtime can constant-fold it away), runs in the same session on the same core as
    the model, and reaches the output as ``0 * mean(chain)``, so every output value is unchanged.
    The input is viewed as rows of its last dimension (``width``, default the input's width) and
    multiplied by a random orthogonal matrix each step, which keeps the values bounded (finite).
    Its cost is not known in advance: callers measure the slowdown it makes.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if matmuls < 1:
        raise ValueError(f"matmuls must be >= 1, got {matmuls}")
    model = onnx.load(str(src))
    graph = model.graph
    inp = graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    width = width or dims[-1]
    if not width or width < 1:
        raise ValueError(f"cannot infer the input width of {src}; pass width")
    out = graph.output[0]
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((width, width)))
    graph.initializer.extend(
        [
            numpy_helper.from_array(q.astype(np.float32), "slow_w"),
            numpy_helper.from_array(np.array([-1, width], dtype=np.int64), "slow_shape"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "slow_zero"),
        ]
    )
    nodes = [helper.make_node("Reshape", [inp.name, "slow_shape"], ["slow_0"], name="slow_reshape")]
    for k in range(matmuls):
        nodes.append(
            helper.make_node("MatMul", [f"slow_{k}", "slow_w"], [f"slow_{k + 1}"], name=f"slow_mm{k}")
        )
    pre = f"{out.name}_before_slow"
    for node in graph.node:
        node.output[:] = [pre if o == out.name else o for o in node.output]
    nodes += [
        helper.make_node("ReduceMean", [f"slow_{matmuls}"], ["slow_mean"], keepdims=0, name="slow_mean"),
        helper.make_node("Mul", ["slow_mean", "slow_zero"], ["slow_nil"], name="slow_nil"),
        helper.make_node("Add", [pre, "slow_nil"], [out.name], name="slow_add"),
    ]
    graph.node.extend(nodes)
    assert out.type.tensor_type.elem_type == TensorProto.FLOAT
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst
