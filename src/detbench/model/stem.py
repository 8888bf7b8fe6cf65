"""The model's stem found by structure: the first layers, whose outputs are at stride 4 or finer.

They run at the highest resolutions on the image's own pixel statistics, so an image unlike the
calibration set (a small, heavily compressed JPEG) moves their activations furthest. At n scale they
hold few weights (YOLO11n's layers 0-2: about 12 k of 2.6 M). A layer's exported nodes are named
``/model.{i}/...`` as the head's are (model/head.py).
"""

from __future__ import annotations

import torch

STEM_STRIDE = 4  # YOLO11n: layers 0-2 (Conv s2, Conv s4, C3k2); YOLOv8n likewise with C2f


def stem_layers(model: torch.nn.Module, max_stride: int = STEM_STRIDE, size: int = 64) -> tuple[int, ...]:
    """Indices of the leading layers of the DetectionModel's ``model`` Sequential whose output is at
    stride ``max_stride`` or finer, found by running a ``size`` px zero image; empty where there is no
    layer list."""
    layers = getattr(model, "model", None)
    if not isinstance(layers, torch.nn.Sequential):
        return ()
    strides: dict[int, int] = {}

    def record(i: int):
        def hook(_module, _inputs, out) -> None:  # None: the output passes on unchanged
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                strides[i] = size // out.shape[-1]

        return hook

    hooks = [layer.register_forward_hook(record(i)) for i, layer in enumerate(layers)]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, size, size, dtype=next(model.parameters()).dtype))
    finally:
        for h in hooks:
            h.remove()
    out = []
    for i in range(len(layers)):
        if strides.get(i, max_stride + 1) > max_stride:
            break
        out.append(i)
    return tuple(out)


def stem_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    """Fragment of every exported node name inside each stem layer (``/model.0/``)."""
    return tuple(f"/model.{i}/" for i in stem_layers(model))
