"""The contracts between the API, the operator and the workers.

Workflow types are started by name with these dataclasses, so callers never import worker
code. This package is imported inside the workflow sandbox: keep it to the standard
library and ``temporalio``.
"""
