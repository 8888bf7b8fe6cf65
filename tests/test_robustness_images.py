"""Huge but legal images: decoded, letterboxed to the model size, in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = """
import json, resource, sys
from detbench.data.images import load_image
from detbench.runtimes.preprocess import preprocess
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x, infos = preprocess([load_image(sys.argv[1])], 128)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"shape": list(x.shape), "orig": list(infos[0].orig_shape), "grew_kib": after - before,
                  "min": float(x.min()), "max": float(x.max())}))
"""


def test_huge_legal_jpeg_is_letterboxed_in_bounded_memory(tmp_path: Path) -> None:
    """A 6000x4000 (24 MP) JPEG, under the bomb limit, becomes a (1, 3, 128, 128) batch; the process
    grows by well under 1 GiB (decoded RGB is 72 MB; nothing keeps float copies of the full image)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)
    path = tmp_path / "huge.jpg"
    Image.fromarray(small).resize((6000, 4000), Image.Resampling.NEAREST).save(path, quality=80)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1, 3, 128, 128]
    assert result["orig"] == [4000, 6000]
    assert 0.0 <= result["min"] <= result["max"] <= 1.0
    assert result["grew_kib"] < 1024 * 1024, f"grew by {result['grew_kib'] / 1024:.0f} MiB"
