#!/usr/bin/env bash
# The installed-package check (.ci/run): build detbench's wheel, install it (not editable) into a fresh
# venv, and from a directory outside the checkout run the main job and the shipped suite the way a
# user's repository would, with a user-style deploy artifact (ultralytics' own ONNX export).
#
#   bash scripts/check_wheel.sh            # uses .venv to build; DETBENCH_CACHE is shared if set
#   DETBENCH_WHEEL_ENV=.tox/py311-torch214 bash scripts/check_wheel.sh   # .ci/run: into that env
#
# A fresh venv unpacks torch's 6.6 GB again (minutes); .ci/run instead installs the wheel over the
# editable install of the tox env that just passed, and `pip check`s that its requirements hold.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
python=${PYTHON:-python3.11}
work=$(mktemp -d "${TMPDIR:-/tmp}/detbench-wheel.XXXXXX")
export PIP_DISABLE_PIP_VERSION_CHECK=1

"$root/.venv/bin/pip" wheel --quiet --no-deps -w "$work/dist" "$root"
wheel=$(ls "$work"/dist/detbench-*.whl)
echo "wheel: $(basename "$wheel") $(du -k "$wheel" | cut -f1) KiB"

if [ -n "${DETBENCH_WHEEL_ENV:-}" ]; then
    venv=$(cd "$DETBENCH_WHEEL_ENV" && pwd)
    "$venv/bin/pip" uninstall --quiet --yes detbench
    "$venv/bin/pip" install --quiet -c "$root/constraints.txt" "$wheel[test]"
    "$venv/bin/pip" check
else
    venv=$work/venv
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet torch==2.14.1 torchvision==0.29.1
    "$venv/bin/pip" install --quiet -c "$root/constraints.txt" "$wheel[test]"
fi
# Not the checkout's code: the venv's own copy, found through site-packages.
"$venv/bin/python" -c "import detbench, sys; assert 'site-packages' in detbench.__file__, detbench.__file__; print('installed at', detbench.__file__)"

mkdir -p "$work/user/deploy"
cd "$work/user"  # a user's repository: no pyproject of ours, no conftest, no fixtures/
export PATH="$venv/bin:$PATH"
detbench report --quick --out report
# A user-style artifact: ultralytics' own export of the weights the user trained (here the baseline).
python - <<'PY'
import shutil
from pathlib import Path

from detbench.paths import FIXTURES, configure_environment

configure_environment()  # offline, settings inside DETBENCH_CACHE
from ultralytics import YOLO  # noqa: E402

shutil.copy(FIXTURES / "baseline" / "best.pt", "best.pt")
onnx = YOLO("best.pt").export(format="onnx", imgsz=128)
shutil.move(onnx, "deploy/model.onnx")
PY
# On every core (README "Scale-out"): tox has just run every backend's checks from the checkout;
# here the point is that the installed copy collects the whole suite from outside it and passes it on
# the user's artifact, so only that backend's tests run (and every test of no backend).
HYPOTHESIS_PROFILE=ci pytest --pyargs detbench.suite -p no:cacheprovider --benchmark-disable -ra -n auto \
    --detbench-weights best.pt --detbench-artifact onnxruntime=deploy/model.onnx --detbench-backends onnxruntime
cd "$root" && rm -rf "$work"
