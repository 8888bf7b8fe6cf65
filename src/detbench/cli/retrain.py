"""``python scripts/train_baseline.py``'s options: retrain the committed baseline (detbench.model.retrain)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from detbench.model import retrain as retrain_module
from detbench.model.retrain import RetrainSettings, retrain


def main(argv: list[str] | None = None) -> int:
    defaults = RetrainSettings()
    ap = argparse.ArgumentParser(
        description=retrain_module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--train", type=int, default=defaults.train)
    ap.add_argument("--val", type=int, default=defaults.val)
    ap.add_argument("--seed", type=int, default=defaults.seed)
    ap.add_argument("--imgsz", type=int, default=defaults.imgsz)
    ap.add_argument("--epochs", type=int, default=defaults.epochs)
    ap.add_argument("--batch", type=int, default=defaults.batch)
    ap.add_argument("--out", type=Path, default=defaults.out)
    args = ap.parse_args(argv)
    command = "python scripts/train_baseline.py " + " ".join(argv if argv is not None else sys.argv[1:])
    provenance = retrain(RetrainSettings(**vars(args)), command=command)
    print(json.dumps(provenance, indent=2))
    return 0
