"""The ADX HTTP API for frontends: direct reads, workflow operations, status, SSE, cancel."""
