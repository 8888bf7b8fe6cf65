"""History stage: saved benchmark runs, the stores that keep them (files, PostgreSQL), the gate on them."""
