"""Perf stage: timing core, statistics, gate, budgets, A/B, machine identity, peaks, first call."""
