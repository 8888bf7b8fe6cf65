#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the shared benchmark history (CI and local use).
#
#   url=$(bash scripts/pg.sh start DIR)    # initdb (first time) + start; prints the postgresql:// URL
#   DETBENCH_HISTORY=$url pytest tests/benchmarks --benchmark-enable ...
#   bash scripts/pg.sh stop DIR
#
# Unix socket in DIR only (listen_addresses=''), trust auth on that socket. As root the cluster runs
# as an unprivileged user ($DETBENCH_PG_USER, else postgres, else nobody) via setpriv, because initdb
# refuses root. Binaries: $DETBENCH_PG_BIN, else the newest /usr/lib/postgresql/*/bin, else PATH.
# The logic is tests/_support/postgres.py, the same code the tests' fixture uses.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
exec "$python" "$root/tests/_support/postgres.py" "$@"
