"""The throughput pipeline: the stream gives the sequential pipeline's results in input order, overlaps
decode with inference, reads its paths lazily and reports an unreadable image without stopping."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detbench.errors import ImageError
from detbench.runtimes.decode import Decoded
from detbench.runtimes.pipeline import stage_calls
from detbench.runtimes.stream import ImagePipeline, StreamResult, parallel, same_results

IMGSZ = 32
NAMES = ("a", "b")
BAD = {3, 10}  # indices of the fake images that fail to decode


class FakeBackend:
    """A raw head that depends on the input's content, so another image's input gives other detections;
    ``delay`` seconds per call stands in for inference."""

    output = "raw"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0
        self.threads: set[int] = set()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.threads.add(threading.get_ident())
        if self.delay:
            time.sleep(self.delay)
        means = batch[0].mean(axis=(1, 2))  # per channel
        boxes = np.array([[8, 8, 6, 6], [9, 9, 6, 6], [24, 20, 10, 8]], np.float32).T  # (4, anchors)
        scores = np.stack([means[:3], means[[2, 1, 0]] * 0.8]).astype(np.float32)  # (classes, anchors)
        return np.concatenate([boxes, scores])[None]


def fake_decoder(delay: float = 0.0, log: list[str] | None = None):
    """Decodes ``img-<i>`` to an image whose size and colour come from i; ``BAD`` indices refuse."""

    def decode(path: str | os.PathLike, imgsz: object) -> Decoded:
        if delay:
            time.sleep(delay)
        i = int(Path(path).name.split("-")[1])
        if log is not None:
            log.append(Path(path).name)
        if i in BAD:
            raise ImageError(Path(path), "not an image (fake)")
        h, w = 20 + 3 * i, 40 - i
        rgb = np.empty((h, w, 3), np.uint8)
        rgb[...] = ((50 + 11 * i) % 256, (200 - 7 * i) % 256, (90 + 13 * i) % 256)
        return Decoded(rgb, (h, w), 1)

    return decode


def paths(n: int) -> list[Path]:
    return [Path(f"img-{i:02d}") for i in range(n)]


def make(backend: FakeBackend | None = None, preprocess: str = "lean", decoder=None) -> ImagePipeline:
    dec = decoder or fake_decoder()
    return ImagePipeline(
        backend or FakeBackend(),
        lambda: stage_calls(IMGSZ, NAMES, decode=dec, preprocess=preprocess, postprocess="numpy"),
    )


class TestSameAsSequential:
    @pytest.mark.parametrize("preprocess", ["reference", "lean"])
    @pytest.mark.parametrize(
        ("workers", "depth", "post_thread"), [(1, 1, False), (2, 4, False), (3, 2, True), (2, 6, True)]
    )
    def test_stream_gives_the_sequential_results_in_order(
        self, preprocess: str, workers: int, depth: int, post_thread: bool
    ) -> None:
        """Same paths, same errors, detections bit for bit, in input order, for every pool shape; the
        lean variant's reused buffer is not overwritten while several images are in flight."""
        pipe = make(preprocess=preprocess)
        ref = list(pipe.sequential(paths(16)))
        assert sum(len(r.detections) for r in ref if r.detections is not None) > 0
        assert len({r.detections.scores.tobytes() for r in ref if r.ok}) > 1  # images tell apart
        got = list(pipe.stream(paths(16), workers=workers, depth=depth, post_thread=post_thread))
        assert same_results(ref, got) is None, same_results(ref, got)

    def test_same_results_names_a_swapped_pair(self) -> None:
        """The comparison itself sees two results out of order."""
        ref = list(make().sequential(paths(6)))
        swapped = [ref[0], ref[2], ref[1], *ref[3:]]
        assert "result 1" in (same_results(ref, swapped) or "")

    def test_a_decode_failure_is_that_images_result(self) -> None:
        """An image that cannot be decoded yields its error in its place; every other image is detected."""
        got = list(make().stream(paths(14), workers=2, depth=3))
        assert [r.path.name for r in got] == [p.name for p in paths(14)]
        failed = [i for i, r in enumerate(got) if not r.ok]
        assert failed == sorted(BAD)
        assert all(isinstance(got[i].error, ImageError) and got[i].detections is None for i in failed)
        assert all(r.detections is not None for r in got if r.ok)

    def test_real_decoder_on_files(self, tmp_path: Path) -> None:
        """The registered OpenCV decoder in worker threads on real JPEGs and one corrupt file."""
        rng = np.random.default_rng(0)
        files = []
        for i in range(6):
            p = tmp_path / f"img-{i:02d}.jpg"
            Image.fromarray(rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8)).save(p)
            files.append(p)
        (tmp_path / "img-99.jpg").write_bytes(b"\xff\xd8 not a jpeg")
        files.insert(2, tmp_path / "img-99.jpg")
        pipe = make(decoder="opencv")
        ref = list(pipe.sequential(files))
        got = list(pipe.stream(files, workers=2, depth=3))
        assert same_results(ref, got) is None, same_results(ref, got)
        assert [r.ok for r in got] == [True, True, False, True, True, True, True]


def test_stream_overlaps_decode_with_inference() -> None:
    """With a 20 ms decode and a 20 ms inference, N images take about N x 20 ms, well under N x 40 ms
    (what the sequential pipeline takes: the fake's sleeps are its floor)."""
    n, stage = 20, 0.02
    backend = FakeBackend(delay=stage)
    pipe = make(backend, decoder=fake_decoder(delay=stage))
    t0 = time.perf_counter()
    seq = list(pipe.sequential(paths(n)))
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = list(pipe.stream(paths(n), workers=2, depth=4))
    t_stream = time.perf_counter() - t0
    ok = n - len(BAD)  # failed decodes skip inference
    assert t_seq >= n * stage + ok * stage
    assert t_stream < 0.8 * (n * stage + ok * stage), (t_stream, t_seq)
    assert same_results(seq, got) is None
    assert len(backend.threads) == 1  # inference stays on the consumer's thread


def test_stream_reads_paths_lazily() -> None:
    """At most ``depth`` images are taken from the paths ahead of the one being inferred, whatever
    the input's length: the queue is bounded."""
    depth, pulled = 3, []

    def source() -> Iterator[Path]:
        for p in paths(30):
            pulled.append(p)
            yield p

    pipe = make(decoder=fake_decoder(delay=0.002))
    ahead = []
    for k, _ in enumerate(pipe.stream(source(), workers=2, depth=depth)):
        time.sleep(0.003)  # a slow consumer: an unbounded reader would run far ahead
        ahead.append(len(pulled) - (k + 1))
    assert max(ahead) <= depth
    assert len(pulled) == 30


def test_closing_the_stream_stops_its_threads() -> None:
    """Leaving the loop early cancels the images not yet started and leaves no worker running."""
    log: list[str] = []
    pipe = make(decoder=fake_decoder(delay=0.005, log=log))
    results: list[StreamResult] = []
    gen = pipe.stream(paths(40), workers=2, depth=4)
    for r in gen:
        results.append(r)
        if len(results) == 2:
            break
    gen.close()
    assert len(log) <= 2 + 4 + 1
    assert not [t for t in threading.enumerate() if t.name.startswith(("detbench-prepare", "detbench-post"))]


def test_stream_refuses_an_empty_pool() -> None:
    with pytest.raises(ValueError, match="workers and depth"):
        next(make().stream(paths(2), workers=0))


class OneAtATimeBackend(FakeBackend):
    """A FakeBackend that fails when two images run on it at once (a runtime session with one
    inference request is used that way by nobody)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)
        self._busy = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        if not self._busy.acquire(blocking=False):
            raise AssertionError("two images on one backend at once")
        try:
            return super().run(batch)
        finally:
            self._busy.release()


@pytest.mark.parametrize(("workers", "depth"), [(1, None), (2, None), (3, 3), (2, 7)])
def test_parallel_gives_the_sequential_results_in_order(workers: int, depth: int | None) -> None:
    """Whole pipelines on separate backends: the sequential results, errors in their places, in input
    order, each backend running one image at a time."""
    ref = list(make().sequential(paths(16)))
    pipes = [make(OneAtATimeBackend(delay=0.001)) for _ in range(workers)]
    got = list(parallel(pipes, paths(16), depth=depth))
    assert same_results(ref, got) is None, same_results(ref, got)
    assert [i for i, r in enumerate(got) if not r.ok] == sorted(BAD)


def test_parallel_overlaps_whole_images() -> None:
    """Two pipelines with a 20 ms decode and a 20 ms inference each take about half the sequential
    time, and both backends run."""
    n, stage = 20, 0.02
    backends = [FakeBackend(delay=stage) for _ in range(2)]
    pipes = [make(b, decoder=fake_decoder(delay=stage)) for b in backends]
    ok = n - len(BAD)
    t0 = time.perf_counter()
    got = list(parallel(pipes, paths(n)))
    t_par = time.perf_counter() - t0
    assert t_par < 0.75 * (n * stage + ok * stage), t_par
    assert same_results(list(make().sequential(paths(n))), got) is None
    assert all(b.calls > 0 for b in backends)


def test_parallel_reads_paths_lazily_and_stops_when_closed() -> None:
    pulled: list[Path] = []

    def source() -> Iterator[Path]:
        for p in paths(40):
            pulled.append(p)
            yield p

    pipes = [make(decoder=fake_decoder(delay=0.003)) for _ in range(2)]
    gen = parallel(pipes, source(), depth=4)
    for k, _ in enumerate(gen):
        assert len(pulled) - (k + 1) <= 4
        if k == 2:
            break
    gen.close()
    assert len(pulled) <= 3 + 4
    assert not [t for t in threading.enumerate() if t.name.startswith("detbench-parallel")]


def test_parallel_refuses_no_pipes_or_a_short_queue() -> None:
    with pytest.raises(ValueError, match="at least one"):
        next(parallel([], paths(2)))
    with pytest.raises(ValueError, match="depth"):
        next(parallel([make(), make()], paths(2), depth=1))
