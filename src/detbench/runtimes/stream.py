"""Throughput over many images: decode and preprocess of the next images overlapped with inference.

:class:`ImagePipeline` holds one choice per stage (a registered decoder, preprocess and postprocess
variant, a loaded backend) and runs it two ways over an iterable of image paths:

- :meth:`ImagePipeline.sequential`: decode -> preprocess -> run -> postprocess, one image at a time
  (the latency path, and the reference the stream is held to);
- :meth:`ImagePipeline.stream`: a small thread pool decodes and preprocesses up to ``depth`` images
  ahead while this thread runs inference on the current one; postprocess runs here or, with
  ``post_thread=True``, in one more thread overlapped with the next inference.

Both yield one :class:`StreamResult` per path, in input order; a file that cannot be decoded gives a
result carrying its error instead of detections, and the rest go on. Decoders, OpenCV, Pillow,
NumPy and the runtimes release the GIL in their heavy parts, which is what lets the stages overlap.
The backend is only ever called from the thread that iterates, so it needs no locking.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from detbench.runtimes import pipeline
from detbench.runtimes.decode import DECODERS, Decoded, ImageSize
from detbench.runtimes.end2end import postprocess_end2end
from detbench.runtimes.postprocess import CONF, IOU, MAX_DET, Detections
from detbench.runtimes.preprocess import LetterboxInfo

DecodeFn = Callable[[str | os.PathLike, ImageSize], Decoded]
_END = object()  # the end of the paths (a sentinel, since no path value can be reserved)


class Runner(Protocol):
    """What the pipeline needs of a backend: ``run`` on a (1, 3, H, W) float32 batch."""

    def run(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class StreamResult:
    """One image's outcome: its detections in full-resolution pixels, or why it could not be read."""

    path: Path
    detections: Detections | None  # None exactly when ``error`` is set
    error: Exception | None = None  # the decode/preprocess failure of this image; the others go on

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class _Prepared:
    """An image ready for the model (or the error that stopped it)."""

    path: Path
    x: np.ndarray | None = None
    info: LetterboxInfo | None = None
    decoded: Decoded | None = None
    error: Exception | None = None


class ImagePipeline:
    """decode -> preprocess -> ``backend.run`` -> postprocess for one image at a time or as a stream.

    ``decoder`` is a registered decoder name (``runtimes.decode.DECODERS``) or a callable
    ``(path, imgsz) -> Decoded``; ``preprocess`` and ``postprocess`` name registered variants
    (``runtimes.pipeline``). A backend whose ``output`` is "detections" (the end2end export) is
    postprocessed without NMS. Boxes come back in full-resolution pixels of the displayed image.
    """

    def __init__(
        self,
        backend: Runner,
        names: Sequence[str],
        imgsz: int,
        *,
        decoder: str | DecodeFn = "pillow",
        preprocess: str = "reference",
        postprocess: str = "ultralytics",
        conf: float = CONF,
        iou: float = IOU,
        max_det: int = MAX_DET,
    ) -> None:
        if isinstance(decoder, str):
            if decoder not in DECODERS:
                raise ValueError(f"unknown decoder {decoder!r}; registered: {', '.join(DECODERS)}")
            decoder = DECODERS[decoder].decode
        self.backend = backend
        self.names = tuple(names)
        self.imgsz = imgsz
        self.decode: DecodeFn = decoder
        self.pre_variant = pipeline.get("preprocess", preprocess)
        self.post_variant = pipeline.get("postprocess", postprocess)
        self._post = self.post_variant.make()
        self._end2end = getattr(backend, "output", "raw") == "detections"
        self._nms = {"conf": conf, "iou": iou, "max_det": max_det}
        # A preprocess variant may keep state (LeanPreprocessor's buffers): one instance per thread.
        self._local = threading.local()

    # -- the stages ---------------------------------------------------------------------------
    def prepare(self, path: str | os.PathLike, *, own_buffer: bool = False) -> _Prepared:
        """Decode and preprocess one image; a failure is returned, not raised. ``own_buffer``: copy the
        input out of a variant's reused buffer, which that thread's next image would overwrite before
        the model has read it (the stream keeps several prepared images in flight)."""
        path = Path(path)
        try:
            decoded = self.decode(path, self.imgsz)
            fn = getattr(self._local, "preprocess", None)
            if fn is None:
                fn = self._local.preprocess = self.pre_variant.make()
            x, info = fn(decoded.rgb, self.imgsz)
        except Exception as exc:  # an unreadable or refused file is this image's result, not the run's
            return _Prepared(path, error=exc)
        if own_buffer and not self.pre_variant.is_reference:
            x = x.copy()
        return _Prepared(path, x, info, decoded)

    def infer(self, prepared: _Prepared) -> np.ndarray:
        return self.backend.run(prepared.x)

    def finish(self, prepared: _Prepared, raw: np.ndarray) -> StreamResult:
        """Postprocess one image's model output into its result."""
        assert prepared.info is not None and prepared.decoded is not None
        if self._end2end:
            kw = {k: v for k, v in self._nms.items() if k != "iou"}
            det = postprocess_end2end(raw, [prepared.info], self.names, **kw)[0]
        else:
            det = self._post(raw, [prepared.info], self.names, **self._nms)[0]
        if prepared.decoded.factor != 1:  # a reduced decode: back to the full image's pixels
            xyxy = prepared.decoded.boxes_to_full(det.xyxy).astype(np.float32)
            det = Detections(xyxy, det.scores, det.class_ids, det.names)
        return StreamResult(prepared.path, det)

    @staticmethod
    def _failed(prepared: _Prepared) -> StreamResult:
        return StreamResult(prepared.path, None, prepared.error)

    def detect(self, path: str | os.PathLike) -> StreamResult:
        """One image through every stage, nothing overlapped."""
        prepared = self.prepare(path)
        if prepared.error is not None:
            return self._failed(prepared)
        return self.finish(prepared, self.infer(prepared))

    # -- over many images -----------------------------------------------------------------------
    def sequential(self, paths: Iterable[str | os.PathLike]) -> Iterator[StreamResult]:
        """:meth:`detect` for each path in turn: the reference :meth:`stream` is held to."""
        for path in paths:
            yield self.detect(path)

    def stream(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        workers: int = 2,
        depth: int = 4,
        post_thread: bool = False,
    ) -> Iterator[StreamResult]:
        """The results of :meth:`sequential`, in the same order, with decode + preprocess of up to
        ``depth`` images ahead running on ``workers`` threads while this thread runs inference.

        ``paths`` is read lazily: at most ``depth`` prepared images wait at any time, whatever its
        length. ``post_thread``: postprocess image N in one more thread while image N+1 runs.
        Closing the iterator early cancels what has not started and waits for the rest.
        """
        if workers < 1 or depth < 1:
            raise ValueError(f"workers and depth must be >= 1, got workers={workers}, depth={depth}")
        source = iter(paths)
        decode_pool = ThreadPoolExecutor(workers, thread_name_prefix="detbench-prepare")
        post_pool = ThreadPoolExecutor(1, thread_name_prefix="detbench-post") if post_thread else None
        pending: deque[Future[_Prepared]] = deque()  # in input order, so results are too
        posted: deque[Future[StreamResult]] = deque()

        def top_up() -> None:
            while len(pending) < depth:
                path = next(source, _END)
                if path is _END:
                    return
                pending.append(decode_pool.submit(self.prepare, path, own_buffer=True))

        try:
            top_up()
            while pending:
                prepared = pending.popleft().result()
                top_up()  # the freed slot starts decoding before this image's inference
                if post_pool is None:
                    if prepared.error is not None:
                        yield self._failed(prepared)
                    else:
                        yield self.finish(prepared, self.infer(prepared))
                    continue
                if prepared.error is not None:
                    posted.append(post_pool.submit(self._failed, prepared))
                else:
                    posted.append(post_pool.submit(self.finish, prepared, self.infer(prepared)))
                # One postprocess in flight: image N-1's ran during image N's inference.
                while len(posted) > 1:
                    yield posted.popleft().result()
            while posted:
                yield posted.popleft().result()
        finally:
            decode_pool.shutdown(wait=True, cancel_futures=True)
            if post_pool is not None:
                post_pool.shutdown(wait=True, cancel_futures=True)


def same_results(a: Sequence[StreamResult], b: Sequence[StreamResult]) -> str | None:
    """Where two runs' results differ (path, error kind and message, detections bit for bit), or None."""
    if len(a) != len(b):
        return f"{len(a)} results against {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if x.path != y.path:
            return f"result {i}: path {x.path} against {y.path}"
        if (type(x.error), str(x.error)) != (type(y.error), str(y.error)):
            return f"result {i} ({x.path.name}): error {x.error!r} against {y.error!r}"
        dx, dy = x.detections, y.detections
        if (dx is None) != (dy is None):
            return f"result {i} ({x.path.name}): detections on one side only"
        if dx is not None and dy is not None and not _same_detections(dx, dy):
            return f"result {i} ({x.path.name}): detections differ ({len(dx)} against {len(dy)})"
    return None


def _same_detections(a: Detections, b: Detections) -> bool:
    arrays: list[tuple[Any, Any]] = [(a.xyxy, b.xyxy), (a.scores, b.scores), (a.class_ids, b.class_ids)]
    return a.names == b.names and all(
        x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y) for x, y in arrays
    )
