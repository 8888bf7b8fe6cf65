"""Train (or reuse from the cache) one family of the family matrix and print its weights path.

    python scripts/train_family.py yolo11n [--epochs 5] [--train 1500]

detbench.model.families holds the settings, the cache key and the training; this is its command line.
"""

from __future__ import annotations

import argparse

from detbench import paths
from detbench.model.families import FAMILIES, FamilySettings, family_weights


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("family", choices=sorted(FAMILIES))
    defaults = FamilySettings(family="yolo11n")
    ap.add_argument("--epochs", type=int, default=defaults.epochs)
    ap.add_argument("--train", type=int, default=defaults.train)
    args = ap.parse_args(argv)
    print(family_weights(FamilySettings(family=args.family, epochs=args.epochs, train=args.train)))
    return 0


if __name__ == "__main__":
    paths.configure_environment()
    raise SystemExit(main())
