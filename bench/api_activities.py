"""The activities of the bench's workflows.

``bench_create_group_activity`` makes the statements ``POST /v1/groups`` makes, with the
same models as adx_api.routes.groups: one transaction in the tenant's row-level-security
scope (``tenant_session``) with the INSERT of the group, its audit row, and the read-back
of the row for the answer. A name that exists fails it without retries.
``bench_pause_activity`` only waits: the ticker's first pause, shorter than a timer can be.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adx_core.db.engine import Sessions, tenant_session
from adx_core.db.models import AuditEntry, Group
from bench.api_workflows import CREATE_GROUP_ACTIVITY, PAUSE_ACTIVITY, GroupRequest, GroupResult


class GroupActivities:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    @activity.defn(name=CREATE_GROUP_ACTIVITY)
    async def create_group(self, request: GroupRequest) -> GroupResult:
        tenant_id = uuid.UUID(request.tenant_id)
        group_id = uuid.uuid4()
        async with tenant_session(self._sessions, tenant_id) as session:
            inserted = await session.execute(
                insert(Group)
                .values(id=group_id, tenant_id=tenant_id, name=request.name)
                .on_conflict_do_nothing(constraint="uq_groups_tenant_name")
            )
            if not inserted.rowcount:  # type: ignore[attr-defined]
                raise ApplicationError(
                    "the tenant has a group of this name", type="Conflict", non_retryable=True
                )
            session.add(
                AuditEntry(
                    tenant_id=tenant_id,
                    actor_id=request.actor_id,
                    action="group.created",
                    subject=str(group_id),
                    correlation_id=request.correlation_id,
                    details={"group_id": str(group_id)},
                )
            )
            group = await session.get(Group, group_id)
            assert group is not None  # inserted in this transaction
            return GroupResult(
                id=str(group.id),
                name=group.name,
                members=[],
                created_at=group.created_at.isoformat(),
            )

    def all(self) -> list[Callable[..., Any]]:
        return [self.create_group, pause]


@activity.defn(name=PAUSE_ACTIVITY)
async def pause(seconds: float) -> None:
    """The ticker's first pause (the dev server's timers last a second at least)."""
    await asyncio.sleep(seconds)
