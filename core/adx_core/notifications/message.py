"""What a notification says, and the interface every provider implements."""

from __future__ import annotations

import re
from dataclasses import dataclass
from string import Template as Text
from typing import Protocol

from adx_core.contracts.notifications import NotificationRequest, Template

# Parameters come from users (names, display names): control characters would let one
# inject headers into a mail, so they are replaced, and each value is bounded.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MAX_PARAM = 200
# A few parameters carry a person's own words and may be longer (a share's message).
_LONG_PARAMS = {"note": 600}

_TEMPLATES: dict[Template, tuple[str, str]] = {
    Template.WELCOME: (
        "Welcome to ADX, $tenant_name",
        "Hello $admin_name,\n\nyour tenant $tenant_name ($tenant_slug) is ready on the "
        "$plan plan. You are its administrator.\n",
    ),
    Template.INVITATION: (
        "You are invited to $tenant_name",
        "Hello $user_name,\n\n$invited_by invited you to $tenant_name as $role.\n"
        "The invitation $invitation_id is valid until $expires_at.\n",
    ),
    Template.QUOTA_ALERT: (
        "$tenant_name: $resource at $percent% of its quota",
        "The tenant $tenant_name uses $usage of $quota $resource ($percent%), past the "
        "$threshold% threshold.\n",
    ),
    Template.PLAN_CHANGED: (
        "$tenant_name is now on the $plan plan",
        "The tenant $tenant_name changed from the $old_plan plan to the $plan plan.\n",
    ),
    Template.TENANT_DEPROVISIONED: (
        "$tenant_name has been removed",
        "The tenant $tenant_name ($tenant_slug) and its data have been removed.\n",
    ),
    # Never a password: a protected link's password travels by another channel.
    Template.FILE_SHARED: (
        '$sharer_name shared "$file_name" with you',
        'Hello,\n\n$sharer_name shared the file "$file_name" with you as $role.\n'
        "Open it at: $link\nAccess ends: $expires_at\n\n$note\n",
    ),
}


class NotificationRejectedError(Exception):
    """The provider refused the message for good; retrying cannot help."""


@dataclass(frozen=True)
class Message:
    key: str
    tenant_id: str
    template: Template
    to: str
    subject: str
    text: str


def _clean(value: str, limit: int = _MAX_PARAM) -> str:
    return _CONTROL.sub(" ", value)[:limit]


def render(request: NotificationRequest) -> Message:
    subject, body = _TEMPLATES[Template(request.template)]
    params = {
        name: _clean(value, _LONG_PARAMS.get(name, _MAX_PARAM))
        for name, value in request.params.items()
    }
    return Message(
        key=request.key,
        tenant_id=request.tenant_id,
        template=Template(request.template),
        to=_clean(request.to),
        # safe_substitute: a missing parameter shows as $name rather than failing a send.
        subject=Text(subject).safe_substitute(params),
        text=Text(body).safe_substitute(params),
    )


class Notifier(Protocol):
    @property
    def name(self) -> str: ...

    async def send(self, message: Message) -> None:
        """Deliver, or raise NotificationRejectedError (permanent) or another error
        (transient; the activity's retry policy tries again)."""
        ...
