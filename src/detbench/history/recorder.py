"""A pytest session's timed run, saved through the ``Store`` interface: always to the local file store,
also to a shared store when one is set (``--detbench-history`` / ``DETBENCH_HISTORY``); each store keeps
the artifacts the run timed with it (detbench.history.artifacts)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detbench.errors import HistoryStoreError
from detbench.history import artifacts as arts
from detbench.history.benchjson import has_raw_data
from detbench.history.file import FileStore
from detbench.history.store import open_store


class RunRecorder:
    """Keeps a session's timed run: always in the local file history, also in a shared store if set.

    pytest-benchmark calls its JSON hook once per output (``--benchmark-json`` and the autosave): the
    local copy is the first, rewritten once if a later one carries raw timings the first lacked; the
    shared store gets the first output that carries raw samples. Both saves carry one run_uuid and
    the tag. Each store also keeps the artifacts the run's benchmarks timed, and the run notes what
    became of each (``notes``: the local store's). A shared store that cannot be reached is ``error``
    (one line); the local file is kept regardless.
    """

    def __init__(self, target: str | None, *, tag: str | None = None, local: Path | None = None) -> None:
        self.local_dir = local
        self.target = target
        self.tag = tag
        self.run_uuid = str(uuid.uuid4())
        self.path: Path | None = None  # the local file
        self.remote_id: str | None = None
        self.error: str | None = None
        self._local: FileStore | None = None  # made on the first save: the default one creates its directory
        self._with_data = False
        self.notes: list[arts.ArtifactNote] = []

    def record(self, output_json: Mapping[str, Any], *, enabled: bool) -> Path | None:
        """Save ``output_json`` when timing was enabled; returns the local file (None if skipped)."""
        if not enabled:
            return None
        with_data = has_raw_data(output_json)
        bundles, refused = arts.collect(output_json)
        if self.path is None or (with_data and not self._with_data):
            self._local = self._local or FileStore(self.local_dir)
            run_id = self._local.save(
                output_json, tag=self.tag, run_uuid=self.run_uuid, artifacts=bundles, refused=refused
            )
            self.path = self._local.path(run_id)
            self._with_data = with_data
            self.notes = arts.plan(output_json, bundles, refused, self._local.max_artifact_bytes)[2]
        if self.target is None or self.remote_id is not None or not with_data:
            return self.path
        try:
            with open_store(self.target) as shared:
                self.remote_id = shared.save(
                    output_json, tag=self.tag, run_uuid=self.run_uuid, artifacts=bundles, refused=refused
                )
            self.error = None
        except HistoryStoreError as exc:
            self.error = f"{exc}; the run was kept locally in {self.path}"
        return self.path
