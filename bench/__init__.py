"""ADX Core benchmarks: ``make bench`` (``python -m bench``).

The harness starts its own PostgreSQL, Temporal dev server, tenants worker and API on
loopback, drives the API over real HTTP, prints a table and writes docs/benchmarks.md.
The storage part (``bench.storage``) adds the object storage servers and a files worker:
memory while streaming a large object per provider, and migration throughput.
"""
