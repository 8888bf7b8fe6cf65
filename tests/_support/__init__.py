"""Helpers for this repository's own tests (processes, a PostgreSQL cluster, a headless browser,
synthetic benchmark runs); not shipped: the wheel's suite needs none of them."""
