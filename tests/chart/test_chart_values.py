"""Values the chart refuses: by its schema, and by the `fail` checks of _validate.tpl."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from helm_python import HelmRenderError, HelmValuesError

from tests.chart.helpers import CHART, render

SCHEMA_REJECTS: list[tuple[str, dict[str, Any], str]] = [
    ("wrong enum", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("storage enum", {"storage": {"provider": "ftp"}}, "/storage/provider"),
    ("log format", {"log": {"format": "xml"}}, "/log/format"),
    ("typo", {"api": {"replicsa": 3}}, "additional properties 'replicsa' not allowed"),
    ("top-level typo", {"worker": {}}, "additional properties 'worker' not allowed"),
    (
        "negative replicas",
        {"workers": {"files": {"versions": [{"replicas": -1}]}}},
        "/workers/files/versions/0/replicas",
    ),
    ("wrong type", {"operator": {"replicas": "two"}}, "/operator/replicas"),
    (
        "secret in config",
        {"config": {"ADX_JWT_SECRET": "x" * 40}},
        "invalid propertyName 'ADX_JWT_SECRET'",
    ),
    ("not a setting", {"config": {"LOG_LEVEL": "INFO"}}, "invalid propertyName 'LOG_LEVEL'"),
    ("port range", {"api": {"port": 70000}}, "/api/port"),
    ("no versions", {"workers": {"users": {"versions": []}}}, "/workers/users/versions"),
    (
        "version without replicas",
        {"workers": {"users": {"versions": [{"buildId": "a"}]}}},
        "/workers/users/versions/0",
    ),
    (
        "build id pattern",
        {"workers": {"files": {"versions": [{"buildId": "-a", "replicas": 1}]}}},
        "/workers/files/versions/0/buildId",
    ),
    ("build id too long", {"workers": {"files": {"currentBuildId": "a" * 64}}}, "currentBuildId"),
    ("bad strategy", {"rollout": {"strategy": "Canary"}}, "/rollout/strategy"),
    ("step 0", {"rollout": {"progressive": {"steps": [0, 50]}}}, "/rollout/progressive/steps/0"),
    (
        "step 100",
        {"rollout": {"progressive": {"steps": [50, 100]}}},
        "/rollout/progressive/steps/1",
    ),
    (
        "failure rate above 1",
        {"rollout": {"progressive": {"maxFailureRate": 1.5}}},
        "/rollout/progressive/maxFailureRate",
    ),
    ("gate workflow", {"rollout": {"gateWorkflow": "a b"}}, "/rollout/gateWorkflow"),
    ("rollout typo", {"rollout": {"stratgy": "Manual"}}, "'stratgy' not allowed"),
    # The settings with first-class keys are refused in config: two places for one setting
    # would leave which one wins to the order of the ConfigMap's keys.
    ("smtp host in config", {"config": {"ADX_SMTP_HOST": "m"}}, "propertyName 'ADX_SMTP_HOST'"),
    ("provider in config", {"config": {"ADX_NOTIFY_PROVIDER": "smtp"}}, "ADX_NOTIFY_PROVIDER"),
    ("webhook in config", {"config": {"ADX_NOTIFY_WEBHOOK_URL": "h"}}, "ADX_NOTIFY_WEBHOOK_URL"),
    ("scanner in config", {"config": {"ADX_SCANNER": "eicar"}}, "propertyName 'ADX_SCANNER'"),
    ("clamd in config", {"config": {"ADX_CLAMD_ADDRESS": "c:3310"}}, "ADX_CLAMD_ADDRESS"),
    ("env in config", {"config": {"ADX_ENV": "test"}}, "propertyName 'ADX_ENV'"),
    ("provider enum", {"notifications": {"provider": "sms"}}, "/notifications/provider"),
    (
        "smtp security enum",
        {"notifications": {"smtp": {"security": "ssl"}}},
        "/notifications/smtp/security",
    ),
    (
        "webhook url scheme",
        {"notifications": {"webhook": {"url": "ftp://x"}}},
        "/notifications/webhook/url",
    ),
    ("notifications typo", {"notifications": {"smpt": {}}}, "'smpt' not allowed"),
    ("scanner enum", {"scanner": {"kind": "none"}}, "/scanner/kind"),
    (
        "clamd address form",
        {"scanner": {"clamd": {"address": "clamd"}}},
        "/scanner/clamd/address",
    ),
    ("migrations typo", {"migrations": {"enable": True}}, "'enable' not allowed"),
    ("negative backoff", {"migrations": {"backoffLimit": -1}}, "/migrations/backoffLimit"),
    (
        "access mode enum",
        {"storage": {"local": {"persistence": {"accessMode": "ReadWriteOncePod"}}}},
        "/storage/local/persistence/accessMode",
    ),
    (
        "claim size",
        {"storage": {"local": {"persistence": {"size": "ten"}}}},
        "/storage/local/persistence/size",
    ),
]


def versions(*build_ids: str) -> list[dict[str, Any]]:
    return [{"buildId": build_id, "replicas": 1} for build_id in build_ids]


FAILS: list[tuple[dict[str, Any], str]] = [
    ({"operator": {"replicas": 2, "peering": {"enabled": False}}}, "operator.replicas > 1 needs"),
    (
        {"scanner": {"kind": "eicar"}},
        "scanner.kind=eicar with environment=production: the app refuses ADX_SCANNER=eicar in "
        "production at start",
    ),
    # The required values: every cause is in REQUIRED_FAILS below.
    (
        {"scanner": {"clamd": {"address": ""}}},
        "See Required values in the chart's README",
    ),
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
    (
        {"workers": {"tenants": {"buildId": "0.1.0"}}},
        "workers.tenants.buildId was replaced by workers.tenants.versions[].buildId and "
        "currentBuildId",
    ),
    (
        {"workers": {"files": {"replicas": 2}}},
        "workers.files.replicas was replaced by workers.files.versions[].replicas",
    ),
    ({"image": {"tag": "1.0+build.5"}}, "is not a valid worker build id"),
    # JSON Schema cannot say "unique by one property", so duplicates are the template's.
    (
        {"workers": {"users": {"versions": versions("a", "a"), "currentBuildId": "a"}}},
        "name the same Deployment; each version needs its own build id",
    ),
    (
        {"workers": {"users": {"versions": versions("V1.0", "v1_0"), "currentBuildId": "V1.0"}}},
        "name the same Deployment; each version needs its own build id",
    ),
    (
        {"workers": {"users": {"versions": versions("a", "b")}}},
        "workers.users.currentBuildId is required when workers.users.versions holds more than "
        "one version",
    ),
    (
        {"workers": {"users": {"versions": versions("a", "b"), "currentBuildId": "c"}}},
        'workers.users.currentBuildId "c" is not among workers.users.versions[].buildId',
    ),
    (
        {"rollout": {"progressive": {"steps": [10, 50, 25]}}},
        "rollout.progressive.steps must increase",
    ),
    (
        {"rollout": {"strategy": "Progressive", "job": {"activeDeadlineSeconds": 200}}},
        "rollout.job.activeDeadlineSeconds (200) is shorter than the pollers' wait plus every "
        "progressive step (300)",
    ),
]


SMTP_HOST = "notifications.smtp.host (the SMTP server the workers send mail through"
WEBHOOK_URL = "notifications.webhook.url (where notifications.provider=webhook POSTs"
CLAMD_ADDRESS = "scanner.clamd.address (host:port or unix:/path of the clamd"
REQUIRED_FAILS: list[tuple[str, dict[str, Any], list[str], list[str]]] = [
    ("smtp host", {"notifications": {"smtp": {"host": ""}}}, [SMTP_HOST], [CLAMD_ADDRESS]),
    (
        "webhook url",
        {"notifications": {"provider": "webhook"}},
        [WEBHOOK_URL],
        [SMTP_HOST, CLAMD_ADDRESS],
    ),
    ("clamd address", {"scanner": {"clamd": {"address": ""}}}, [CLAMD_ADDRESS], [SMTP_HOST]),
    (
        "both",
        {"notifications": {"smtp": {"host": ""}}, "scanner": {"clamd": {"address": ""}}},
        [SMTP_HOST, CLAMD_ADDRESS],
        [WEBHOOK_URL],
    ),
]


@pytest.mark.parametrize(
    ("values", "named", "not_named"),
    [c[1:] for c in REQUIRED_FAILS],
    ids=[c[0] for c in REQUIRED_FAILS],
)
def test_required_values_are_named_when_missing(
    values: dict[str, Any], named: list[str], not_named: list[str]
) -> None:
    with pytest.raises(HelmRenderError) as failure:
        render(values)
    message = str(failure.value)
    assert (
        "required values are not set, and without them the workers cannot send mail or scan"
        " uploads" in message
    )
    for part in named:
        assert part in message
    for part in not_named:
        assert part not in message


def test_a_bare_render_fails_naming_every_value_to_set() -> None:
    """values.yaml alone: the install stops before anything is created, and says what to set."""
    with pytest.raises(HelmRenderError) as failure:
        render(required=False)
    message = str(failure.value)
    assert SMTP_HOST in message
    assert CLAMD_ADDRESS in message
    assert "See Required values in the chart's README" in message


def test_eicar_is_fine_outside_production() -> None:
    values = {"environment": "development", "scanner": {"kind": "eicar", "clamd": {"address": ""}}}
    assert render(values)


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
    # One message (two build ids, one Deployment name) is tested twice: equal, and equal once
    # folded into a resource name.
    assert len(messages) == len(FAILS) - 1
    for message in messages:
        # A printf message is checked by its fixed tail.
        fixed = re.split("%[sdq]", message)[-1].strip()
        assert any(fixed in expected or expected in message for _, expected in FAILS), message


def test_jwks_alone_is_enough_outside_production() -> None:
    values = {
        "environment": "development",
        "auth": {"jwt": {"secret": {"enabled": False}, "jwksUrl": "https://idp.example/jwks"}},
    }
    assert render(values)


def test_a_single_version_needs_no_current_build_id() -> None:
    assert render({"workers": {"users": {"versions": versions("only")}}})


def test_the_deadline_is_checked_against_the_progressive_steps() -> None:
    # 120 s of pollers plus 3 steps of 60 s: 300 s is just enough.
    rollout = {"strategy": "Progressive", "job": {"activeDeadlineSeconds": 300}}
    assert render({"rollout": rollout})


def undescribed(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """The keys of value (values.yaml) that schema leaves undescribed, unknown or open."""
    found = [] if "description" in schema else [f"{path}: no description"]
    if isinstance(value, dict) and "properties" in schema:
        if schema.get("additionalProperties") is not False:
            found.append(f"{path}: additionalProperties is not false")
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{path}.{key}: not in the schema")
            else:
                found += undescribed(item, schema["properties"][key], f"{path}.{key}")
    return found


def test_every_value_has_a_described_closed_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert undescribed(values, schema, "") == []
