"""The operator's handlers, registered on a registry of its own (not kopf's global one),
so that a process or a test can run several operators side by side."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from adx_operator import migration_handlers, tenant_handlers
from adx_operator.context import OperatorContext
from adx_operator.naming import FINALIZER, GROUP


def build_registry(ctx: OperatorContext) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
        # In a pod, the service account; elsewhere, the current kubeconfig context.
        return kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
            settings=settings
        )

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        # Handler progress and the last handled spec go into our own annotations; status
        # is ours alone (its schema has no room for kopf's bookkeeping).
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        # Kubernetes Events are posted for phase changes (kopf.event), not for every log
        # line of every handler: a resource waiting for a workflow would fill its events.
        settings.posting.level = logging.CRITICAL
        # A watch that hears nothing is re-established well before load balancers drop it.
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330

    tenant_handlers.register(registry, ctx)
    migration_handlers.register(registry, ctx)
    return registry
