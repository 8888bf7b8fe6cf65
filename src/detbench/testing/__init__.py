"""Test helpers for detbench and its users: Hypothesis strategies live in ``detbench.testing.strategies``."""
