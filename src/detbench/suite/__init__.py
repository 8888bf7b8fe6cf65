"""The suite users run against their own detector, from any directory:

    pytest --pyargs detbench.suite --detbench-weights best.pt --detbench-data data.yaml \
        --detbench-artifact onnxruntime=deploy/model.onnx

It holds what is meaningful for any weights and artifacts: cross-backend equivalence (raw head,
IoU-matched detections, determinism, Hypothesis-drawn inputs), accuracy parity (mAP50, mAP50-95,
per class) through every backend, every registered pipeline variant against its stage's reference
(``test_pipelines``), and the batch-1 / batch-8 latency benchmarks (timed with
``--benchmark-enable``). The fixtures come from the ``detbench`` pytest plugin. The repository's
own unit tests (the cache, the CLI, the goldens of the committed baseline, the gate's calibration)
stay in its ``tests/``.
"""
