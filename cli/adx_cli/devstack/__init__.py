"""Runners for the embedded development stack: PostgreSQL, the Temporal dev server and
a small supervisor for the processes of ``adx dev``."""
