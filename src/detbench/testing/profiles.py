"""Hypothesis profiles for detbench's suites, chosen with ``HYPOTHESIS_PROFILE`` (default ``dev``).

- ``dev``: 20 examples, the example database on (quick local runs that remember failures).
- ``ci``: 50 examples, derandomized, no database: every torch env of the matrix sees the same inputs.
- ``thorough``: 300 examples, every phase, verbose; for a night run.

Inference is slow and its time varies with load, so no profile has a deadline.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, Verbosity, settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


def register_profiles() -> None:
    settings.register_profile("dev", max_examples=20, **_COMMON)
    settings.register_profile(
        "ci", max_examples=50, derandomize=True, database=None, print_blob=True, **_COMMON
    )
    settings.register_profile(
        "thorough",
        max_examples=300,
        print_blob=True,
        phases=list(Phase),
        verbosity=Verbosity.normal,
        **_COMMON,
    )


def load_profile() -> str:
    """Register the profiles and load the one ``HYPOTHESIS_PROFILE`` names; returns its name."""
    register_profiles()
    name = os.environ.get(PROFILE_ENV, "dev")
    settings.load_profile(name)
    return name
