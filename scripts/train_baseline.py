"""Train the committed baseline (YOLOv8n, 128 px) on the synthetic dataset and commit-ready copy it.

    python scripts/train_baseline.py            # the settings that produced fixtures/baseline
    python scripts/train_baseline.py --epochs 5 --train 200   # a quicker, weaker model

The work is ``detbench.model.retrain`` (so ``--detbench-retrain`` needs no checkout); its options are
``detbench.cli.retrain``.
"""

from __future__ import annotations

from detbench.cli.retrain import main
from detbench.paths import configure_environment

if __name__ == "__main__":
    configure_environment()
    raise SystemExit(main())
