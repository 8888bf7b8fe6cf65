#!/usr/bin/env bash
# One-step set-up on a fresh machine: a venv in .venv with torch pinned and detbench[test] installed.
# Idempotent: a second run only checks. Used by the README's two commands and by .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3.11}
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first and pinned: resolving '.[test]' alone would take the newest torch the range allows.
.venv/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/pip install --quiet -c constraints.txt -e '.[test]'
