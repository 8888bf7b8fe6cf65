"""Recompute the cross-version goldens and show how they differ from the stored ones.

    python scripts/regen_goldens.py            # diff only: exit 1 if anything moved beyond tolerance
    python scripts/regen_goldens.py --write    # accept the new numbers: rewrite fixtures/golden/

Regenerating is a decision, not a fix: read the diff (per input, which group moved and by how much;
which versions changed) and commit the new goldens together with the reason. The ``pytorch`` backend
on the committed baseline produces them; ``--weights`` is for development only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detbench.errors import DetbenchError
from detbench.model.baseline import resolve_weights
from detbench.paths import configure_environment, shown
from detbench.runtimes.backends import BackendSettings, create
from detbench.runtimes.cache import sha256_file
from detbench.verify import golden


def _weights_label(weights: Path) -> str:
    return shown(weights)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, help="checkpoint (default: the committed baseline)")
    ap.add_argument(
        "--dir", type=Path, default=golden.GOLDEN_DIR, help="golden folder (default: %(default)s)"
    )
    ap.add_argument("--write", action="store_true", help="write the new goldens (atomically)")
    args = ap.parse_args(argv)

    try:
        weights = resolve_weights(args.weights)
        backend = create(golden.PRODUCER, BackendSettings(threads=1))
        backend.load(weights)
        backend.set_imgsz(golden.IMGSZ)
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
        old = golden.load_goldens(args.dir) if (args.dir / golden.JSON_NAME).exists() else None
    except DetbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(f"new goldens: {golden.describe_versions(meta['versions'], meta['platform'])}")
    if old is None:
        print(f"no goldens in {args.dir}: nothing to compare with")
        differs = True
    else:
        diff = golden.diff_goldens(old, raw, meta, golden.golden_tolerance(golden.PRODUCER))
        made = golden.provenance(old).removeprefix("produced by ")
        print(f"stored goldens ({old.meta.get('created', '?')}): {made}")
        print("\n".join(f"  {line}" for line in diff.lines))
        differs = diff.beyond_tolerance
        print("differs beyond tolerance" if differs else "all within tolerance")

    if args.write:
        golden.write_goldens(args.dir, raw, meta)
        print(f"wrote {args.dir / golden.NPZ_NAME} and {args.dir / golden.JSON_NAME}")
        return 0
    if differs:
        print("not written: rerun with --write to accept the new numbers")
    return 1 if differs else 0


if __name__ == "__main__":
    configure_environment()
    sys.exit(main())
