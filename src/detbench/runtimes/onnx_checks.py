"""Checks on ONNX files before a runtime opens them: parseable, and external data kept inside."""

from __future__ import annotations

from pathlib import Path

from detbench.errors import ModelFileError


def check_onnx_file(path: Path) -> None:
    """Refuse files that are not ONNX, and external-data references that leave the model's folder.

    onnxruntime resolves external tensors relative to the model; a path like ``../../etc/x`` would
    read an arbitrary file, so we check every location before the runtime does.
    """
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelFileError(path, f"not a valid ONNX model ({type(exc).__name__})") from exc
    if not proto.graph.node:
        raise ModelFileError(path, "ONNX model has an empty graph (not a model, or truncated)")
    base = path.parent.resolve()
    for tensor in proto.graph.initializer:
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (base / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(base):
            raise ModelFileError(
                path,
                f"external data {location!r} of tensor {tensor.name!r} points "
                "outside the model's folder; refused",
            )
        if not target.is_file():
            raise ModelFileError(path, f"external data file {location!r} is missing")
