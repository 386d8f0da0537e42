"""Tenant workflow contracts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

TASK_QUEUE = "tenants"
TENANT_PROVISIONING_WORKFLOW = "tenant_provisioning_workflow"

# The reserved tenant that platform operators belong to; the first migration creates it.
PLATFORM_TENANT_ID = "00000000-0000-4000-8000-000000000000"
PLATFORM_TENANT_SLUG = "platform"


class Plan(StrEnum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class TenantStatus(StrEnum):
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    FAILED = "failed"
    SUSPENDED = "suspended"
    DEPROVISIONED = "deprovisioned"


@dataclass(frozen=True)
class TenantAdmin:
    email: str
    name: str


@dataclass(frozen=True)
class TenantCreationRequest:
    tenant_id: str
    slug: str
    display_name: str
    plan: Plan
    admin: TenantAdmin
    requested_by: str


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    slug: str
    display_name: str
    plan: Plan
    status: TenantStatus
    storage_prefix: str


# Activities of tenant_provisioning_workflow. Each is keyed by tenant_id, so a retry after a
# crash finds its own earlier work and does not apply it twice.
CREATE_TENANT_RECORD_ACTIVITY = "create_tenant_record_activity"
DELETE_TENANT_RECORD_ACTIVITY = "delete_tenant_record_activity"
CREATE_TENANT_STORAGE_ACTIVITY = "create_tenant_storage_activity"
DELETE_TENANT_STORAGE_ACTIVITY = "delete_tenant_storage_activity"
ACTIVATE_TENANT_ACTIVITY = "activate_tenant_activity"


@dataclass(frozen=True)
class TenantRecordInput:
    tenant_id: str
    slug: str
    display_name: str
    plan: Plan
    storage_prefix: str
    requested_by: str


@dataclass(frozen=True)
class TenantRecordResult:
    created: bool


@dataclass(frozen=True)
class TenantRef:
    tenant_id: str


@dataclass(frozen=True)
class TenantStorageInput:
    tenant_id: str
    storage_prefix: str


@dataclass(frozen=True)
class TenantStorageResult:
    provider: str
    created: bool


@dataclass(frozen=True)
class UndoResult:
    undone: bool


@dataclass(frozen=True)
class ActivateTenantInput:
    tenant_id: str
    requested_by: str


@dataclass(frozen=True)
class ActivateTenantResult:
    activated: bool


# ApplicationError types the workflow's callers can rely on.
SLUG_TAKEN = "SlugTaken"
