"""The model's attention blocks found by structure: the layers that hold a self-attention module.

YOLO11 (``C2PSA``, layer 10 at n scale), YOLO12 (``A2C2f``) and YOLO26 (``C2PSA``, and the attention
``C3k2`` of its P5 neck) compute self-attention in ultralytics ``Attention`` / ``AAttn`` modules
(activation-times-activation MatMuls and a Softmax between 1x1 convs); YOLOv8, v9 and v5u have
none. The OpenVINO INT8 recipe keeps such a layer's activations in float and stores its weights
int8, and both INT8 recipes keep such a model's stem (model/stem.py) in float (runtimes/export.py).
A layer's exported nodes are named ``/model.{i}/...`` as the head's are (model/head.py).
"""

from __future__ import annotations

import torch


def attention_types() -> tuple[type[torch.nn.Module], ...]:
    """The module types that compute self-attention in ultralytics' detection families."""
    from ultralytics.nn.modules.block import AAttn, Attention

    return (Attention, AAttn, torch.nn.MultiheadAttention)


def attention_layers(model: torch.nn.Module) -> tuple[int, ...]:
    """Indices, in the DetectionModel's ``model`` Sequential, of the layers holding an attention
    module; empty where there is none (or no layer list)."""
    layers = getattr(model, "model", None)
    if not isinstance(layers, torch.nn.Sequential):
        return ()
    kinds = attention_types()
    return tuple(i for i, layer in enumerate(layers) if any(isinstance(m, kinds) for m in layer.modules()))


def attention_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    """Fragment of every exported node name inside each attention layer (``/model.10/``)."""
    return tuple(f"/model.{i}/" for i in attention_layers(model))
