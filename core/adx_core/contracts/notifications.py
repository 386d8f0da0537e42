"""The notification activity's contract, shared by every worker.

Workflows ask for a notification by template and parameters; the activity renders and
sends it through the configured provider (SMTP or a webhook). ``key`` makes it
exactly-once-recorded: a retry after a successful send finds the record and does not send
again, and the SMTP Message-ID is derived from it so a receiver can also deduplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

SEND_NOTIFICATION_ACTIVITY = "send_notification_activity"

# Raised (non-retryable) when the provider refuses the message for good: an address the
# server rejects, a webhook answering 4xx.
NOTIFICATION_REJECTED = "NotificationRejected"


class Template(StrEnum):
    WELCOME = "welcome"
    INVITATION = "invitation"
    QUOTA_ALERT = "quota_alert"
    PLAN_CHANGED = "plan_changed"
    TENANT_DEPROVISIONED = "tenant_deprovisioned"
    FILE_SHARED = "file_shared"


@dataclass(frozen=True)
class NotificationRequest:
    key: str
    tenant_id: str
    to: str
    template: Template
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NotificationResult:
    provider: str
    sent: bool  # False when the key was already recorded as sent
