"""The repository's own test configuration: the detbench plugin, plus a throwaway PostgreSQL cluster.

Options, markers, Hypothesis profiles and the fixture chain (dataset → baseline → workbench →
backend) come from ``detbench.plugin``, registered under the ``pytest11`` entry point, so the
repository's tests and a user's ``pytest --pyargs detbench.suite`` run on the same fixtures.
"""

from __future__ import annotations

import os

import pytest

# -- a throwaway PostgreSQL cluster (tests/_support/postgres.py) ------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster():
    """One Unix-socket-only cluster per session, stopped and removed afterwards; skips without binaries."""
    import shutil

    from _support import postgres

    reason = postgres.missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = postgres.start_cluster()
    yield cluster
    if cluster.running():
        cluster.stop()
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session cluster (no schema yet: first use creates it)."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    return postgres_cluster.create_database(f"{name}_{os.getpid()}_{id(request) % 10_000}")
