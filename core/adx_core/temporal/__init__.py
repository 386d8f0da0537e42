"""Temporal plumbing shared by every process: codec, interceptors and the client factory."""
