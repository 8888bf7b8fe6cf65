"""Verify stage: tolerance table, comparators, accuracy, goldens, deliberate breakage."""
