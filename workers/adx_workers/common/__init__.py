"""Helpers shared by workflows. Sandbox-safe: only the standard library, temporalio and the
contracts."""
