"""Values the chart refuses: by its schema, and by the `fail` checks of _validate.tpl."""

from __future__ import annotations

import re
from typing import Any

import pytest
from helm_python import HelmRenderError, HelmValuesError

from tests.chart.helpers import CHART, render

SCHEMA_REJECTS: list[tuple[str, dict[str, Any], str]] = [
    ("wrong enum", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("storage enum", {"storage": {"provider": "ftp"}}, "/storage/provider"),
    ("log format", {"log": {"format": "xml"}}, "/log/format"),
    ("typo", {"api": {"replicsa": 3}}, "additional properties 'replicsa' not allowed"),
    ("top-level typo", {"worker": {}}, "additional properties 'worker' not allowed"),
    ("negative replicas", {"workers": {"files": {"replicas": -1}}}, "/workers/files/replicas"),
    ("wrong type", {"operator": {"replicas": "two"}}, "/operator/replicas"),
    (
        "secret in config",
        {"config": {"ADX_JWT_SECRET": "x" * 40}},
        "invalid propertyName 'ADX_JWT_SECRET'",
    ),
    ("not a setting", {"config": {"LOG_LEVEL": "INFO"}}, "invalid propertyName 'LOG_LEVEL'"),
    ("port range", {"api": {"port": 70000}}, "/api/port"),
    ("versions not yet", {"workers": {"users": {"versions": []}}}, "'versions' not allowed"),
]

FAILS: list[tuple[dict[str, Any], str]] = [
    ({"operator": {"replicas": 2, "peering": {"enabled": False}}}, "operator.replicas > 1 needs"),
    ({"operator": {"watchNamespaces": ["a"]}}, "KopfPeering CRD"),
    ({"api": {"ingress": {"enabled": True}}}, "api.ingress.enabled needs api.ingress.host"),
    ({"storage": {"provider": "s3"}}, "storage.provider=s3 needs storage.s3.bucket"),
    ({"storage": {"provider": "gcs"}}, "storage.provider=gcs needs storage.gcs.bucket"),
    ({"storage": {"provider": "azure"}}, "storage.provider=azure needs storage.azure.container"),
    (
        {"environment": "development", "auth": {"jwt": {"secret": {"enabled": False}}}},
        "neither auth.jwt.secret.enabled nor auth.jwt.jwksUrl",
    ),
    (
        {"auth": {"jwt": {"secret": {"enabled": False}, "jwksUrl": "https://idp/jwks"}}},
        "environment=production needs auth.jwt.secret.enabled",
    ),
    ({"temporal": {"tls": {"enabled": True}}}, "temporal.tls.enabled needs"),
    (
        {"temporal": {"tls": {"enabled": True, "existingSecret": "t", "keyKey": ""}}},
        "certKey and temporal.tls.keyKey go together",
    ),
    ({"secrets": {"existingSecret": ""}}, "every secret reference must name its own"),
    (
        {
            "workers": {
                "files": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}
            }
        },
        "workers.files.autoscaling: minReplicas is above maxReplicas",
    ),
]


@pytest.mark.parametrize(
    ("values", "message"), [c[1:] for c in SCHEMA_REJECTS], ids=[c[0] for c in SCHEMA_REJECTS]
)
def test_schema_rejects(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmValuesError, match=re.escape(message)):
        render(values)


@pytest.mark.parametrize(("values", "message"), FAILS, ids=[m for _, m in FAILS])
def test_contradictions_fail_with_a_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmRenderError, match=re.escape(message)):
        render(values)


def test_every_fail_message_is_tested() -> None:
    source = (CHART / "templates" / "_validate.tpl").read_text()
    messages = re.findall(r'fail (?:\(printf )?"([^"]+)"', source)
    assert len(messages) == len(FAILS)
    for message in messages:
        # A printf message is checked by its fixed tail.
        fixed = message.split("%s")[-1].strip()
        assert any(fixed in expected or expected in message for _, expected in FAILS), message


def test_jwks_alone_is_enough_outside_production() -> None:
    values = {
        "environment": "development",
        "auth": {"jwt": {"secret": {"enabled": False}, "jwksUrl": "https://idp.example/jwks"}},
    }
    assert render(values)
