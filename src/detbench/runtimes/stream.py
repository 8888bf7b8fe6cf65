"""Throughput over many images: decode and preprocess of the next images overlapped with inference.

:class:`ImagePipeline` runs the one per-image pipeline (``runtimes.pipeline.StageCalls``: decode,
preprocess and postprocess variants, built from a ``runtimes.pipeline.Pipeline`` or by
``stage_calls``) around a loaded backend, two ways over an iterable of image paths:

- :meth:`ImagePipeline.sequential`: decode -> preprocess -> run -> postprocess, one image at a time
  (the latency path, and the reference the stream is held to);
- :meth:`ImagePipeline.stream`: a small thread pool decodes and preprocesses up to ``depth`` images
  ahead while this thread runs inference on the current one; postprocess runs here or, with
  ``post_thread=True``, in one more thread overlapped with the next inference.

:func:`parallel` is the throughput mode: several whole pipelines, each with its own backend (a
runtime at 1 thread each, say), take the images in turn, so one image's decode overlaps another's
inference and a small model's inference is not split over cores it scales poorly on.

Both yield one :class:`StreamResult` per path, in input order; a file that cannot be decoded gives a
result carrying its error instead of detections, and the rest go on. Decoders, OpenCV, Pillow,
NumPy and the runtimes release the GIL in their heavy parts, which is what lets the stages overlap.
In ``sequential`` and ``stream`` the backend is only ever called from the thread that iterates; in
``parallel`` each backend is used by one image at a time. No backend needs locking.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from detbench.runtimes.end2end import is_end2end
from detbench.runtimes.postprocess import CONF, IOU, MAX_DET, Detections

if TYPE_CHECKING:
    from detbench.runtimes.pipeline import Pipeline, StageCalls

_END = object()  # the end of the paths (a sentinel, since no path value can be reserved)
T = TypeVar("T")


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
    state: Any = None  # what the pipeline's postprocess takes beside the raw output
    error: Exception | None = None


class ImagePipeline:
    """``backend.run`` inside a per-image pipeline, for one image at a time or as a stream.

    ``make`` builds the pipeline's :class:`~detbench.runtimes.pipeline.StageCalls`, called once per
    thread that decodes, preprocesses or postprocesses (a variant's reused buffers stay that thread's);
    :meth:`from_pipeline` builds it from a ``runtimes.pipeline.Pipeline``. Boxes come back in
    full-resolution pixels of the displayed image.
    """

    def __init__(self, backend: Runner, make: Callable[[], StageCalls]) -> None:
        self.backend = backend
        self._make = make
        self._local = threading.local()

    @classmethod
    def from_pipeline(
        cls,
        spec: Pipeline,
        backend: Runner | None = None,
        *,
        conf: float = CONF,
        iou: float = IOU,
        max_det: int = MAX_DET,
    ) -> ImagePipeline:
        """``spec``'s variants around ``backend`` (by default loaded from ``spec.config``); a backend
        whose ``output`` is "detections" (the end2end export) is postprocessed without NMS."""
        run = backend if backend is not None else spec.config.load()
        end2end = is_end2end(run)
        return cls(run, lambda: spec.calls(conf=conf, iou=iou, max_det=max_det, end2end=end2end))

    def calls(self) -> StageCalls:
        """This thread's stages."""
        calls = getattr(self._local, "calls", None)
        if calls is None:
            calls = self._local.calls = self._make()
        return calls

    # -- the stages ---------------------------------------------------------------------------
    def prepare(self, path: str | os.PathLike, *, own_buffer: bool = False) -> _Prepared:
        """Decode and preprocess one image; a failure is returned, not raised. ``own_buffer``: copy the
        input out of a variant's reused buffer, which that thread's next image would overwrite before
        the model has read it (the stream keeps several prepared images in flight)."""
        path = Path(path)
        calls = self.calls()
        try:
            x, state = calls.preprocess(calls.decode(path))
        except Exception as exc:  # an unreadable or refused file is this image's result, not the run's
            return _Prepared(path, error=exc)
        if own_buffer and calls.reuses_input:
            x = x.copy()
        return _Prepared(path, x, state)

    def infer(self, prepared: _Prepared) -> np.ndarray:
        return self.backend.run(prepared.x)

    def finish(self, prepared: _Prepared, raw: np.ndarray) -> StreamResult:
        """Postprocess one image's model output into its result."""
        assert prepared.x is not None
        return StreamResult(prepared.path, self.calls().postprocess(raw, prepared.state))

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
        decode_pool = ThreadPoolExecutor(workers, thread_name_prefix="detbench-prepare")
        post_pool = ThreadPoolExecutor(1, thread_name_prefix="detbench-post") if post_thread else None
        posted: deque[Future[StreamResult]] = deque()

        def prepare(path: str | os.PathLike) -> Future[_Prepared]:
            return decode_pool.submit(self.prepare, path, own_buffer=True)

        try:
            # Each image's freed slot starts decoding before that image's inference.
            for ready in _ahead(prepare, paths, depth):
                prepared = ready.result()
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


def _ahead(
    submit: Callable[[str | os.PathLike], Future[T]], paths: Iterable[str | os.PathLike], depth: int
) -> Iterator[Future[T]]:
    """``submit(path)``'s futures in input order, each once it is done, with up to ``depth`` submitted
    ahead of it: ``paths`` is read lazily, a slot refilled (before the done future is handed over) only
    as the image in it finishes, so at most ``depth`` wait whatever the input's length."""
    source = iter(paths)
    pending: deque[Future[T]] = deque()  # in input order, so results are too

    def top_up() -> None:
        while len(pending) < depth and (path := next(source, _END)) is not _END:
            pending.append(submit(path))

    top_up()
    while pending:
        future = pending.popleft()
        wait((future,))
        top_up()
        yield future


def parallel(
    pipes: Sequence[ImagePipeline], paths: Iterable[str | os.PathLike], *, depth: int | None = None
) -> Iterator[StreamResult]:
    """The results of ``pipes[0].sequential(paths)``, in the same order, with the images spread over
    ``len(pipes)`` threads, each image run whole (decode, preprocess, inference, postprocess) by
    whichever pipeline is free. The pipes must be the same pipeline with separate backends (e.g.
    ``ImagePipeline.from_pipeline`` once per worker): a backend runs one image at a time.

    ``paths`` is read lazily: at most ``depth`` (default twice the workers) images are in flight or
    waiting to be yielded. Closing the iterator early cancels what has not started.
    """
    if not pipes:
        raise ValueError("parallel needs at least one pipeline")
    depth = 2 * len(pipes) if depth is None else depth
    if depth < len(pipes):
        raise ValueError(f"depth must be >= the {len(pipes)} workers, got {depth}")
    free: queue.SimpleQueue[ImagePipeline] = queue.SimpleQueue()
    for pipe in pipes:
        free.put(pipe)

    def detect(path: str | os.PathLike) -> StreamResult:
        pipe = free.get()
        try:
            return pipe.detect(path)
        finally:
            free.put(pipe)

    pool = ThreadPoolExecutor(len(pipes), thread_name_prefix="detbench-parallel")
    try:
        for done in _ahead(lambda path: pool.submit(detect, path), paths, depth):
            yield done.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
