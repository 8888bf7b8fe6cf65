"""Tune stage: the configuration space, the verified search over it, and its outputs."""
