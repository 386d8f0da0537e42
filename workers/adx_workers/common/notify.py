"""send_notification_activity: every worker registers it, so any workflow can notify."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core.contracts.notifications import (
    NOTIFICATION_REJECTED,
    SEND_NOTIFICATION_ACTIVITY,
    NotificationRequest,
    NotificationResult,
)
from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import NotificationSent
from adx_core.logging import get_logger
from adx_core.notifications import NotificationRejectedError, Notifier, render

log = get_logger(__name__)


class NotificationActivities:
    def __init__(self, sessions: Sessions, notifier: Notifier) -> None:
        self._sessions = sessions
        self._notifier = notifier

    @activity.defn(name=SEND_NOTIFICATION_ACTIVITY)
    async def send_notification(self, request: NotificationRequest) -> NotificationResult:
        tenant_id = uuid.UUID(request.tenant_id)
        async with tenant_session(self._sessions, tenant_id) as session:
            already = await session.scalar(
                select(NotificationSent.key).where(NotificationSent.key == request.key)
            )
        if already is not None:
            return NotificationResult(provider=self._notifier.name, sent=False)
        message = render(request)
        try:
            await self._notifier.send(message)
        except NotificationRejectedError as exc:
            raise ApplicationError(
                str(exc), type=NOTIFICATION_REJECTED, non_retryable=True
            ) from None
        # Recorded after the send: a crash in between sends once more on retry (at least
        # once); the Message-ID derived from the key lets the receiver drop the duplicate.
        async with tenant_session(self._sessions, tenant_id) as session:
            await session.execute(
                insert(NotificationSent)
                .values(
                    key=request.key,
                    tenant_id=tenant_id,
                    template=message.template.value,
                    provider=self._notifier.name,
                )
                .on_conflict_do_nothing(index_elements=[NotificationSent.key])
            )
        log.info("notification sent", template=message.template.value, provider=self._notifier.name)
        return NotificationResult(provider=self._notifier.name, sent=True)
