"""The embedded default: the committed baseline checkpoint and the synthetic dataset it was trained on.

Pickled checkpoints are code. We load a ``.pt`` only when it is the committed fixture and its
sha256 matches the pinned value, or when the user names the file explicitly (their choice).
"""

from __future__ import annotations

import json
from pathlib import Path

from detbench import paths
from detbench._fs import sha256_file
from detbench.data.datasets import SynthConfig, cached_dataset, write_synthetic
from detbench.errors import ModelFileError

BASELINE_DIR = paths.FIXTURES / "baseline"
BASELINE_WEIGHTS = BASELINE_DIR / "best.pt"
PROVENANCE = BASELINE_DIR / "provenance.json"


def pinned_sha256() -> str:
    try:
        value = json.loads(PROVENANCE.read_text())["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(
            PROVENANCE, f"cannot read the pinned weights_sha256 ({type(exc).__name__})"
        ) from exc
    if not isinstance(value, str) or len(value) != 64:
        raise ModelFileError(PROVENANCE, "weights_sha256 is not a sha256 hex digest")
    return value


def baseline_synth_config() -> SynthConfig:
    """The dataset the committed baseline was trained on (its val split is the accuracy reference)."""
    if PROVENANCE.is_file():
        return SynthConfig(**json.loads(PROVENANCE.read_text())["synthetic_dataset"])
    return SynthConfig()


def baseline_weights() -> Path:
    """The committed checkpoint, verified against its pinned sha256 before anything unpickles it."""
    if not BASELINE_WEIGHTS.is_file() or not PROVENANCE.is_file():
        raise ModelFileError(BASELINE_WEIGHTS, "committed baseline missing (fixtures/baseline/)")
    actual, expected = sha256_file(BASELINE_WEIGHTS), pinned_sha256()
    if actual != expected:
        raise ModelFileError(
            BASELINE_WEIGHTS,
            f"sha256 {actual[:16]}… does not match the pinned "
            f"{expected[:16]}… in {PROVENANCE.name}; refusing to unpickle it",
        )
    return BASELINE_WEIGHTS


def resolve_weights(user: Path | str | None) -> Path:
    """The user's explicitly named checkpoint, or the verified committed baseline."""
    if user is None:
        return baseline_weights()
    path = Path(user).expanduser()
    if not path.is_file():
        raise ModelFileError(path, "weights file not found")
    return path.resolve()


def synthetic_dataset(cfg: SynthConfig | None = None) -> Path:
    """Generate (once) the synthetic dataset into the cache and return its data.yaml."""
    cfg = cfg or baseline_synth_config()
    return cached_dataset(cfg.key(), lambda folder: write_synthetic(folder, cfg))
