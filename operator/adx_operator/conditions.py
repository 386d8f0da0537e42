"""Kubernetes-style conditions: a pure merge of what is true now into what status said.

A condition's ``lastTransitionTime`` changes only when its ``status`` does, as the
Kubernetes API conventions ask; reason, message and observedGeneration follow every
reconcile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def truth(value: bool | None) -> ConditionStatus:
    if value is None:
        return "Unknown"
    return "True" if value else "False"


def merge(
    previous: Sequence[Mapping[str, Any]] | None,
    current: Iterable[Condition],
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    before = {str(item.get("type")): item for item in previous or () if isinstance(item, Mapping)}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    merged = []
    for condition in current:
        old = before.get(condition.type)
        unchanged = old is not None and old.get("status") == condition.status
        merged.append(
            {
                "type": condition.type,
                "status": condition.status,
                "reason": condition.reason,
                # The CRD caps messages; a workflow's failure text can be long.
                "message": condition.message[:1024],
                "lastTransitionTime": str(old.get("lastTransitionTime", stamp))
                if old is not None and unchanged
                else stamp,
                "observedGeneration": generation,
            }
        )
    return merged
