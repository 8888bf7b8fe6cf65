"""Test helpers the shipped plugin and suite use, and users may import: Hypothesis strategies
(``strategies``), the tally of drawn examples' detections (``drawn``), the Hypothesis profiles
(``profiles``), the declared-dependency rule (``requirements``). The repository's own test helpers
live in ``tests/_support``."""
