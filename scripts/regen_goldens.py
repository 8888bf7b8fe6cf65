"""Recompute the cross-version goldens and show how they differ from the stored ones.

    python scripts/regen_goldens.py            # diff only: exit 1 if anything moved beyond tolerance
    python scripts/regen_goldens.py --write    # accept the new numbers: rewrite fixtures/golden/
    python scripts/regen_goldens.py --backend onnxruntime-int8 [--write]   # an INT8 backend's own set

Regenerating is a decision, not a fix: read the diff (per input, which group moved and by how much;
which versions changed) and commit the new goldens together with the reason. The ``pytorch`` backend
on the committed baseline produces golden.npz; each INT8 backend (``--backend``) its own
``<backend>.npz``, from the export of this env (run the diff in the other torch env to measure how
far a release moves it). ``--weights`` is for development only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detbench._fs import sha256_file
from detbench.errors import DetbenchError
from detbench.model.baseline import resolve_weights
from detbench.paths import configure_environment, shown
from detbench.runtimes.backends import BackendSettings, BaseBackend, create
from detbench.runtimes.workbench import Workbench
from detbench.verify import golden


def _weights_label(weights: Path) -> str:
    return shown(weights)


def _reference(weights: Path) -> BaseBackend:
    backend = create(golden.PRODUCER, BackendSettings(threads=1))
    backend.load(weights)
    backend.set_imgsz(golden.IMGSZ)
    return backend


def _int8_backend(name: str, weights: Path) -> BaseBackend:
    """The INT8 backend on this env's export of ``weights`` (calibrated on the synthetic train split)."""
    return Workbench.from_options(weights, threads=1).load(name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, help="checkpoint (default: the committed baseline)")
    ap.add_argument(
        "--dir", type=Path, default=golden.GOLDEN_DIR, help="golden folder (default: %(default)s)"
    )
    ap.add_argument("--write", action="store_true", help="write the new goldens (atomically)")
    ap.add_argument(
        "--backend",
        default=golden.PRODUCER,
        choices=[golden.PRODUCER, *golden.INT8_PRODUCERS],
        help="whose goldens (default: %(default)s, the cross-version reference)",
    )
    args = ap.parse_args(argv)
    own = args.backend != golden.PRODUCER
    stem = args.backend if own else golden.STEM
    tol = golden.INT8_OWN if own else golden.golden_tolerance(golden.PRODUCER)

    try:
        weights = resolve_weights(args.weights)
        backend = _int8_backend(args.backend, weights) if own else _reference(weights)
        x, names = golden.make_inputs(golden.IMGSZ)
        raw = golden.compute(backend, x)
        meta = golden.make_meta(
            x,
            names,
            weights=_weights_label(weights),
            weights_sha256=sha256_file(weights),
            imgsz=golden.IMGSZ,
            # The artifact by file name only: a machine path in a committed file means nothing elsewhere.
            producer={**backend.describe(), "artifact": Path(backend.describe()["artifact"]).name},
        )
        json_path, npz_path = golden.golden_files(args.dir, stem)
        old = golden.load_goldens(args.dir, stem) if json_path.exists() else None
    except DetbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(f"new goldens: {golden.describe_versions(meta['versions'], meta['platform'])}")
    if old is None:
        print(f"no goldens in {args.dir}: nothing to compare with")
        differs = True
    else:
        diff = golden.diff_goldens(old, raw, meta, tol)
        made = golden.provenance(old).removeprefix("produced by ")
        print(f"stored goldens ({old.meta.get('created', '?')}): {made}")
        print("\n".join(f"  {line}" for line in diff.lines))
        differs = diff.beyond_tolerance
        print("differs beyond tolerance" if differs else "all within tolerance")

    if args.write:
        golden.write_goldens(args.dir, raw, meta, stem)
        print(f"wrote {npz_path} and {json_path}")
        return 0
    if differs:
        print("not written: rerun with --write to accept the new numbers")
    return 1 if differs else 0


if __name__ == "__main__":
    configure_environment()
    sys.exit(main())
