"""A Kubernetes API for the operator tests: kmock's ``KubernetesEmulator`` taught the parts of
the API server that the kopf operator relies on.

No kube-apiserver can run here. kmock 0.8 serves discovery, objects, lists and watches, but
it merges every patch into the whole object and keeps no metadata of its own. On top of it,
:class:`AdxKubernetesEmulator` does what the API server does for our CRDs:

* a create sets ``uid``, ``creationTimestamp`` (RFC 3339, UTC), ``generation: 1`` and a
  ``resourceVersion`` from one global counter, and names objects from ``generateName``;
* every change bumps the ``resourceVersion``; a write that changes nothing changes no
  version and sends no watch event (as etcd skips it);
* ``generation`` grows when anything outside ``metadata`` (and ``status``, for a resource
  with the status subresource) changes, and when a deletion starts (``markAsDeleting`` in
  the API server does that too);
* ``application/json-patch+json`` (a failed ``test`` op answers 422) and
  ``application/merge-patch+json`` (RFC 7386); other patch types answer 415;
* the status subresource: a write to ``.../status`` changes only ``.status``, a write to the
  object leaves ``.status`` as it was, and a create drops ``.status``;
* for the CRDs in ``crds/``: unknown fields are pruned, schema defaults applied, and the
  result checked with :func:`tests.support.crds.problems` (with the old object on updates,
  for the CEL transition rules); a refused write answers 422 and changes nothing;
* deletion: ``deletionTimestamp`` while finalizers remain, gone (one ``DELETED`` event) when
  the last finalizer is removed, and no new finalizers on an object being deleted;
* watches resume from a ``resourceVersion`` (every event after it, in order), start with
  ``ADDED`` for what exists otherwise, honour ``timeoutSeconds`` and ``sendInitialEvents``.

Writes are atomic: each one runs synchronously while holding kmock's own lock, so two
concurrent patches can never interleave their read-modify-write.

Not emulated: label and field selectors (answered 400 rather than ignored), PUT, paging
(``limit`` is ignored), namespace existence, owner references and garbage collection,
dry runs and server-side apply. kmock 0.8 misparses ``/api/v1/namespaces[/<name>]``; the
emulator parses those paths itself.

Start one with :func:`serve_kubernetes`, which yields a :class:`KubeHandle`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import dataclasses
import datetime
import functools
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import kopf
import yaml

# Request parsing and streaming errors have no public names in kmock 0.8.
from kmock._internal import parsing, rendering

from tests.support.crds import CRDS, problems, schema_of

Body = dict[str, Any]
ObjectKey = tuple[kmock.resource, str | None, str]

LOOPBACK = "127.0.0.1"
TOKEN = "adx-emulator-token"  # any bearer token: the emulator authenticates nobody
HELPER_HEADER = "X-Adx-Test-Helper"  # marks the requests KubeHandle's helpers send

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
# The alphabet the API server's generateName draws from (no vowels, no look-alike digits).
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# What the API server sets and keeps: clients cannot write these.
SYSTEM_FIELDS = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
)
CRD_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
PEERING_VERBS = ("get", "list", "watch", "patch", "create")
# kmock 0.8 reads /api/v1/namespaces/<name> as a namespace prefix (and fails on the bare
# collection), so the emulator parses these paths itself.
_NAMESPACE_PATH = re.compile(
    r"/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?"
)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api_version(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)


def resource_path(
    resource: kmock.resource,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The URL path of a collection, an object or an object's subresource."""
    prefix = f"/apis/{resource.group}/{resource.version}" if resource.group else "/api/v1"
    parts = [prefix]
    if namespace is not None:
        parts.append(f"namespaces/{namespace}")
    parts.append(str(resource.plural))
    parts.extend(part for part in (name, subresource) if part is not None)
    return "/".join(parts)


def _error(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """A failure that kmock renders as a Kubernetes ``Status`` with this code and reason."""
    return kmock.KubernetesError(
        status=code, reason=reason, message=message, details=details or {"code": code}
    )


def _header(request: kmock.Request, name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in request.headers.items() if k.lower() == wanted), None)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, ``null`` removes a key, anything
    else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _prune(schema: Mapping[str, Any], value: Any, *, root: bool = False) -> Any:
    """Drop the fields a structural schema does not declare, as the API server does."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(schema["items"], item) for item in value]
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    properties: Mapping[str, Any] = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    result: Body = {}
    for key, item in value.items():
        if root and key in ("apiVersion", "kind", "metadata"):
            result[key] = item  # the API server's own, whatever the schema says
        elif key in properties:
            result[key] = _prune(properties[key], item)
        elif isinstance(additional, dict):
            result[key] = _prune(additional, item)
        elif keep_unknown or additional is True:
            result[key] = item
    return result


def _default(schema: Mapping[str, Any], value: Any) -> Any:
    """Fill in the schema's defaults under the objects that are present."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_default(schema["items"], item) for item in value]
    if isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value:
                value[key] = _default(child, value[key])
    return value


def _spec_part(body: Mapping[str, Any], *, status_apart: bool) -> Body:
    """What ``metadata.generation`` counts changes of."""
    skipped = {"metadata", "status"} if status_apart else {"metadata"}
    return {key: value for key, value in body.items() if key not in skipped}


def _revision(param: str | None) -> int | None:
    """A watch's starting revision: None for "now, after the current state" ("" or "0")."""
    if param is None or not param.isdigit() or int(param) == 0:
        return None
    return int(param)


@dataclasses.dataclass(frozen=True)
class _Change:
    revision: int
    resource: kmock.resource
    namespace: str | None
    name: str
    event: Body


@attrs.define(kw_only=True)
class AdxKubernetesEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API server's metadata, patch types, status subresource,
    CRD validation, deletion and watch semantics (see the module docstring).

    The request log is kmock's, untouched: :attr:`requests` lists every request in arrival
    order as ``kmock.Request`` objects. For each one, a test reads

    * ``request.method`` (``kmock.method.PATCH``; ``.value`` is ``"PATCH"``) and
      ``request.action`` (``kmock.action.CREATE/UPDATE/DELETE/FETCH/LIST/WATCH``),
    * ``request.url.path`` (the full path) and ``request.params`` (the query),
    * ``request.resource`` (``kmock.resource(group, version, plural)``),
      ``request.namespace``, ``request.name``,
    * ``request.subresource`` (``"status"`` for a write through /status, else None),
    * ``request.data``: the parsed JSON body, a dict for creates and merge patches or the
      list of ops of a JSON patch; ``request.body`` is the raw bytes,
    * ``request.headers`` (e.g. ``Content-Type``, ``User-Agent``).

    The stored objects are in kmock's ``objects``, each with its history of versions:
    ``emulator.objects[resource, namespace, name]``. Writes go through HTTP only: objects put
    there directly get none of the API server's metadata.

    A reaction a test adds (``emulator[kmock.subresource("status")] << 500``) answers in
    place of the API server: the requests it answers change nothing (they are still logged).
    """

    _crds: dict[kmock.resource, Body] = attrs.field(factory=dict, init=False)
    _counter: int = attrs.field(default=0, init=False)
    _journal: list[_Change] = attrs.field(factory=list, init=False)
    _changed: asyncio.Condition = attrs.field(init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Watchers wait on the same lock the writes hold: a change and its notice are one step.
        self._changed = asyncio.Condition(self._lock)

    @property
    def requests(self) -> list[kmock.Request]:
        """Every request served so far, in arrival order (see the class docstring)."""
        return list(self._requests)

    @property
    def revision(self) -> int:
        """The latest resourceVersion handed out (0 before the first write)."""
        return self._counter

    def declare_crd(self, crd: Mapping[str, Any]) -> list[kmock.resource]:
        """Serve a CustomResourceDefinition's served versions, in discovery and with its
        schema (pruning, defaults, validation); returns the declared resources."""
        spec = crd["spec"]
        names = spec["names"]
        declared = []
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            resource = kmock.resource(spec["group"], version["name"], names["plural"])
            self.resources[resource] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                shortnames=names.get("shortNames", []),
                categories=names.get("categories", []),
                namespaced=spec["scope"] == "Namespaced",
                verbs=CRD_VERBS,
                subresources=set(version.get("subresources", {})),
            )
            self._crds[resource] = dict(crd)
            declared.append(resource)
        return declared

    def resource_for(self, name: str | kmock.resource) -> kmock.resource:
        """The one declared resource that ``name`` names: ``"tenants"``,
        ``"tenants.adx.dev"``, ``"adx.dev/v1alpha1/tenants"`` or a ``kmock.resource``."""
        wanted = name if isinstance(name, kmock.resource) else kmock.resource(name)
        found = [resource for resource in self.resources if wanted.check(resource)]
        if len(found) != 1:
            raise LookupError(f"{name!r} names {len(found)} declared resources: {found!r}")
        return found[0]

    async def close_watches(self) -> None:
        """End every watch stream, so that the HTTP server can stop without waiting."""
        async with self._changed:
            self._closing = True
            self._changed.notify_all()

    # The HTTP side: requests in, writes under the lock, kmock's reactions render the answers.

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        found = _NAMESPACE_PATH.fullmatch(raw_request.path)
        if found is None:
            return await super().__call__(raw_request)
        request = await _namespace_request(raw_request, found, index=len(self._requests))
        self._requests.append(request)
        try:
            return await self._handle(request)
        except rendering.StreamingError as exc:
            return await self._fail(exc.__cause__ or exc, exc.args[0])
        except Exception as exc:
            return await self._fail(exc, None)

    async def _fail(
        self, exc: BaseException, started: aiohttp.web.StreamResponse | None
    ) -> aiohttp.web.StreamResponse:
        # As kmock's own __call__: keep the error for the test, answer with a Status.
        if not isinstance(exc, Exception) or not self._errors:
            raise exc
        self._errors[-1].append(exc)
        if started is None or not started.prepared:
            return await self._render_error(exc)
        await self._stream_error(exc, started)
        await started.write_eof()
        return started

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # kmock.KubernetesEmulator._handle applies every write its own way, before any reaction
        # answers; here the writes happen in the fallbacks below, when the emulator answers.
        return await kmock.RawHandler._handle(self, request)

    async def _serve_write(self, request: kmock.Request) -> kmock.Payload:
        # One synchronous read-modify-write under the lock: concurrent writes cannot interleave.
        async with self._changed:
            outcome = self._write(request)
            self._changed.notify_all()
        return outcome

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        return await self._serve_write(request)

    async def _serve_update(self, request: kmock.Request) -> kmock.Payload:
        return await self._serve_write(request)

    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        return await self._serve_write(request)

    def _write(self, request: kmock.Request) -> kmock.Payload:
        resource = request.resource
        assert resource is not None
        if resource not in self.resources:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        if request.action == kmock.action.CREATE:
            return self._create(request, resource)
        assert request.name is not None  # kmock guesses updates and deletes only with a name
        key: ObjectKey = (resource, request.namespace, request.name)
        current = self._current(key)
        if current is None:
            raise self._not_found(key)
        if request.action == kmock.action.UPDATE:
            return self._update(request, key, current)
        if request.subresource is not None:
            raise _error(405, "MethodNotAllowed", "a subresource cannot be deleted")
        return self._delete(request, key, current)

    # Reads (the lock held by the caller).

    def _current(self, key: ObjectKey) -> Body | None:
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def _matching(self, request: kmock.Request) -> Iterator[Body]:
        for (resource, namespace, name), obj in self.objects.items():
            if obj.deleted or resource != request.resource:
                continue
            if request.namespace is not None and namespace != request.namespace:
                continue
            if request.name is None or name == request.name:
                yield copy.deepcopy(obj.raw)

    def _known(self, request: kmock.Request) -> kmock.resource:
        resource = request.resource
        if resource is None or resource not in self.resources:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        for selector in ("labelSelector", "fieldSelector"):
            if request.params.get(selector):
                # Answering as if there were no selector would silently hand out wrong objects.
                raise _error(400, "BadRequest", f"{selector} is not supported by the emulator")
        return resource

    def _not_found(self, key: ObjectKey) -> kmock.KubernetesError:
        resource, _, name = key
        return _error(
            404,
            "NotFound",
            f'{resource.plural}.{resource.group} "{name}" not found',
            name=name,
            group=resource.group,
            kind=resource.plural,
        )

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        self._known(request)
        assert request.resource is not None
        assert request.name is not None
        key: ObjectKey = (request.resource, request.namespace, request.name)
        if request.subresource not in (None, "status"):
            raise _error(404, "NotFound", "the server could not find the requested resource")
        async with self._lock:
            body = self._current(key)
        if body is None:
            raise self._not_found(key)
        return body

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        resource = self._known(request)
        async with self._lock:
            items = list(self._matching(request))
            revision = self._counter
        return {
            "apiVersion": _api_version(resource),
            "kind": f"{self.resources[resource].kind}List",
            "metadata": {"resourceVersion": str(revision)},
            "items": items,
        }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        resource = self._known(request)
        seconds = request.params.get("timeoutSeconds")
        deadline = None if seconds is None else asyncio.get_running_loop().time() + int(seconds)
        since = _revision(request.params.get("resourceVersion"))
        async with self._lock:
            revision = self._counter
            if since is None:
                cursor = len(self._journal)
                events = [{"type": "ADDED", "object": body} for body in self._matching(request)]
            else:
                cursor = bisect.bisect_right([change.revision for change in self._journal], since)
                events = []
        yield b""  # the headers go out now, even if nothing happens for a while
        for event in events:
            yield event
        if since is None and request.params.get("sendInitialEvents") == "true":
            yield _initial_events_end(resource, self.resources[resource].kind, revision)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline), self._changed:
                    await self._changed.wait_for(functools.partial(self._news, cursor))
            # Read outside the wait: a timeout still hands out what arrived before it.
            async with self._lock:
                changes, cursor = self._journal[cursor:], len(self._journal)
            for change in changes:
                if _concerns(request, change):
                    yield change.event
            if self._closing or (deadline is not None and not changes):
                return

    def _news(self, cursor: int) -> bool:
        return self._closing or len(self._journal) > cursor

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        # kmock 0.8 names the core group version "/v1" and gives subresources the verbs of
        # their resource; the API server says "v1" and get/patch/update.
        served = await super()._serve_version(request)
        assert isinstance(served, dict)
        if request.resource is not None and request.resource.group == "":
            served["groupVersion"] = "v1"
        for entry in served["resources"]:
            if "/" in entry["name"]:
                entry["verbs"] = ["get", "patch", "update"]
        return served

    # Writes: synchronous, called with the lock held.

    def _commit(self, key: ObjectKey, body: Body, kind: str) -> Body:
        """Store a new version (or the deletion) under the next revision; queue its event."""
        self._counter += 1
        body["metadata"]["resourceVersion"] = str(self._counter)
        if key not in self.objects:
            self.objects[key] = body
        else:
            self.objects[key].history.append(body)
        if kind == "DELETED":
            self.objects[key].delete()  # the history keeps the last state before the marker
        event = {"type": kind, "object": copy.deepcopy(body)}
        self._journal.append(_Change(self._counter, key[0], key[1], key[2], event))
        return body

    def _create(self, request: kmock.Request, resource: kmock.resource) -> kmock.Payload:
        info = self.resources[resource]
        if not isinstance(request.data, dict):
            raise _error(400, "BadRequest", "the body of a create must be a JSON object")
        body: Body = copy.deepcopy(request.data)
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise _error(400, "BadRequest", "metadata must be an object")
        namespace = self._create_namespace(request, bool(info.namespaced), meta)
        name = meta.get("name") or _generated(meta.get("generateName"))
        if not name:
            raise _error(422, "Invalid", "metadata.name: Required value: name or generateName")
        key: ObjectKey = (resource, namespace, name)
        if self._current(key) is not None:
            raise _error(
                409,
                "AlreadyExists",
                f'{resource.plural}.{resource.group} "{name}" already exists',
                name=name,
                group=resource.group,
                kind=resource.plural,
            )
        for field in SYSTEM_FIELDS:
            meta.pop(field, None)
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        if namespace is not None:
            meta["namespace"] = namespace
        body.setdefault("apiVersion", _api_version(resource))
        body.setdefault("kind", info.kind)
        if "status" in info.subresources:
            body.pop("status", None)  # set only through /status
        body = self._admit(resource, body, None)
        return rendering.Response(status=201, payload=self._commit(key, body, "ADDED"))

    def _create_namespace(self, request: kmock.Request, namespaced: bool, meta: Body) -> str | None:
        if not namespaced:
            meta.pop("namespace", None)
            return None
        if request.namespace is None:
            raise _error(400, "BadRequest", "a namespaced object is created under /namespaces/")
        if meta.get("namespace", request.namespace) != request.namespace:
            raise _error(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the"
                " request",
            )
        return request.namespace

    def _update(self, request: kmock.Request, key: ObjectKey, old: Body) -> kmock.Payload:
        resource = key[0]
        has_status = "status" in self.resources[resource].subresources
        if request.subresource not in (None, "status") or (request.subresource and not has_status):
            raise _error(404, "NotFound", "the server could not find the requested resource")
        patched = _patched(request, old)
        _check_preconditions(old, patched.get("metadata", {}).get("resourceVersion"), None)
        if request.subresource == "status":
            new = copy.deepcopy(old)
            _carry(new, patched, "status")
        else:
            new = copy.deepcopy(patched)
            if has_status:
                _carry(new, old, "status")
            _keep_system_metadata(old, new)
        new = self._admit(resource, new, old)
        if new == old:
            return old  # a no-op: the API server writes nothing and bumps nothing
        if _spec_part(new, status_apart=has_status) != _spec_part(old, status_apart=has_status):
            new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._commit(key, new, "DELETED")  # the last finalizer went: it is gone
        return self._commit(key, new, "MODIFIED")

    def _delete(self, request: kmock.Request, key: ObjectKey, current: Body) -> kmock.Payload:
        options = request.data if isinstance(request.data, dict) else {}
        preconditions = options.get("preconditions") or {}
        _check_preconditions(current, preconditions.get("resourceVersion"), preconditions)
        meta = current["metadata"]
        if meta.get("deletionTimestamp"):
            return current  # already being deleted: waiting for its finalizers
        if meta.get("finalizers"):
            meta.update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            meta["generation"] = meta.get("generation", 0) + 1
            return self._commit(key, current, "MODIFIED")
        return self._commit(key, current, "DELETED")

    def _admit(self, resource: kmock.resource, body: Body, old: Body | None) -> Body:
        """Prune, default and validate a custom resource against its CRD; others pass as
        they are. Refusal raises, so nothing is stored."""
        crd = self._crds.get(resource)
        if crd is None:
            return body
        schema = schema_of(crd, str(resource.version))
        body = _default(schema, _prune(schema, body, root=True))
        found = problems(crd, body, old)
        if found:
            kind = crd["spec"]["names"]["kind"]
            name = body["metadata"].get("name")
            raise _error(
                422,
                "Invalid",
                f'{kind}.{resource.group} "{name}" is invalid: {"; ".join(found)}',
                name=name,
                group=resource.group,
                kind=kind,
                causes=[{"reason": "FieldValueInvalid", "message": p} for p in found],
            )
        return body


def _generated(prefix: Any) -> str | None:
    if not isinstance(prefix, str) or not prefix:
        return None
    return prefix + "".join(secrets.choice(NAME_ALPHABET) for _ in range(5))


def _patched(request: kmock.Request, old: Body) -> Body:
    """The whole object with the request's patch applied, before any of the server's rules."""
    content_type = (_header(request, "Content-Type") or "").split(";")[0].strip().lower()
    if content_type == MERGE_PATCH:
        if not isinstance(request.data, dict):
            raise _error(400, "BadRequest", "a merge patch must be a JSON object")
        result = _merge(old, request.data)
    elif content_type == JSON_PATCH:
        if not isinstance(request.data, list):
            raise _error(400, "BadRequest", "a JSON patch must be a list of operations")
        try:
            result = jsonpatch.apply_patch(old, request.data, in_place=False)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as exc:
            # kopf reads a 422 on its resourceVersion test as "changed meanwhile, retry".
            raise _error(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {exc}",
                causes=[{"reason": "FieldValueInvalid", "message": str(exc)}],
            ) from exc
    else:
        raise _error(415, "UnsupportedMediaType", f"the patch type {content_type!r} is not served")
    if not isinstance(result, dict) or not isinstance(result.get("metadata"), dict):
        raise _error(422, "Invalid", "the patched object must be an object with metadata")
    return result


def _check_preconditions(
    current: Body, resource_version: Any, preconditions: Mapping[str, Any] | None
) -> None:
    meta = current["metadata"]
    uid = (preconditions or {}).get("uid")
    stale = resource_version not in (None, "", meta.get("resourceVersion"))
    if stale or uid not in (None, meta.get("uid")):
        raise _error(
            409,
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified; please apply your"
            " changes to the latest version and try again",
            name=meta.get("name"),
        )


def _carry(target: Body, source: Body, field: str) -> None:
    """Make ``target[field]`` what it is in ``source`` (absent included)."""
    if field in source:
        target[field] = copy.deepcopy(source[field])
    else:
        target.pop(field, None)


def _keep_system_metadata(old: Body, new: Body) -> None:
    """Clients cannot change the server's fields; names are immutable; an object being
    deleted takes no new finalizers."""
    old_meta, meta = old["metadata"], new["metadata"]
    for field in ("name", "namespace"):
        if meta.get(field) != old_meta.get(field):
            raise _error(422, "Invalid", f"metadata.{field}: Invalid value: field is immutable")
    for field in SYSTEM_FIELDS:
        if field in old_meta:
            meta[field] = old_meta[field]
        else:
            meta.pop(field, None)
    if old_meta.get("deletionTimestamp"):
        added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
        if added:
            raise _error(
                422,
                "Invalid",
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is"
                f" being deleted, found new finalizers {sorted(added)!r}",
            )


def _concerns(request: kmock.Request, change: _Change) -> bool:
    return (
        change.resource == request.resource
        and (request.namespace is None or change.namespace == request.namespace)
        and (request.name is None or change.name == request.name)
    )


def _initial_events_end(resource: kmock.resource, kind: str | None, revision: int) -> Body:
    """The bookmark that closes the initial ADDED events of a ``sendInitialEvents`` watch."""
    return {
        "type": "BOOKMARK",
        "object": {
            "apiVersion": _api_version(resource),
            "kind": kind,
            "metadata": {
                "resourceVersion": str(revision),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        },
    }


async def _namespace_request(
    raw: aiohttp.web.BaseRequest, found: re.Match[str], *, index: int
) -> kmock.Request:
    body = await raw.read()
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    name, subresource = found["name"], found["sub"]
    path = parsing.ParsedPath(
        group="", version="v1", plural="namespaces", name=name, subresource=subresource
    )
    return kmock.Request(
        id=index,
        raw_request=raw,
        url=raw.url,
        method=raw.method,
        params=dict(raw.query),
        headers=dict(raw.headers),
        cookies=dict(raw.cookies),
        body=body,
        text=text,
        data=data,
        action=parsing.guess_k8s(path, kmock.method(raw.method), dict(raw.query)),
        resource=kmock.resource("", "v1", "namespaces"),
        name=name,
        subresource=subresource,
    )


def declare_resources(emulator: AdxKubernetesEmulator, crds: Path = CRDS) -> None:
    """Everything the operator finds by discovery: our CRDs, namespaces and events, and
    kopf's peering resources. Verbs are discovery data; the emulator does not enforce them."""
    for path in sorted(crds.glob("*.yaml")):
        emulator.declare_crd(yaml.safe_load(path.read_text()))
    emulator.resources["v1/namespaces"] = kmock.ResourceInfo(
        kind="Namespace",
        singular="namespace",
        shortnames=["ns"],
        namespaced=False,
        verbs=["get", "list", "watch"],
    )
    emulator.resources["v1/events"] = kmock.ResourceInfo(
        kind="Event",
        singular="event",
        shortnames=["ev"],
        namespaced=True,
        verbs=["create", "get", "list", "watch", "patch"],
    )
    # kopf's own CRDs give the peerings no status subresource: status goes in the main body.
    for plural, kind, namespaced in (
        ("kopfpeerings", "KopfPeering", True),
        ("clusterkopfpeerings", "ClusterKopfPeering", False),
    ):
        emulator.resources[f"kopf.dev/v1/{plural}"] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=namespaced, verbs=PEERING_VERBS
        )


class KubeApiError(Exception):
    """A request of a :class:`KubeHandle` helper that the emulator refused."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body

    @property
    def reason(self) -> str | None:
        """The ``reason`` of the Kubernetes Status (``Invalid``, ``Conflict``, ...)."""
        return self.body.get("reason") if isinstance(self.body, dict) else None


@dataclasses.dataclass(frozen=True)
class KubeHandle:
    """A running emulator: its URL, how to log in to it, and helpers for tests.

    ``client`` is an aiohttp session based at ``url`` (paths like ``/apis/...`` work) for
    the requests the helpers do not cover. The helpers' requests carry the
    ``X-Adx-Test-Helper`` header, so that :meth:`status_writes` and :meth:`main_writes` can
    leave them out.
    """

    emulator: AdxKubernetesEmulator
    url: str
    client: aiohttp.ClientSession = dataclasses.field(repr=False)

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        """A kubeconfig for this emulator: plain HTTP, a dummy bearer token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "adx-emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "adx-emulator", "user": {"token": TOKEN}}],
            "contexts": [
                {
                    "name": "adx-emulator",
                    "context": {
                        "cluster": "adx-emulator",
                        "user": "adx-emulator",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "adx-emulator",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def connection_info(self, *, namespace: str = "default") -> kopf.ConnectionInfo:
        """What a ``@kopf.on.login`` handler returns to reach this emulator."""
        return kopf.ConnectionInfo(server=self.url, token=TOKEN, default_namespace=namespace)

    def path(
        self,
        resource: str | kmock.resource,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The URL path of a collection or object (``resource`` as in ``resource_for``)."""
        return resource_path(self.emulator.resource_for(resource), namespace, name, subresource)

    async def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> Any:
        """One helper request; the parsed answer, or :class:`KubeApiError` for a refusal."""
        headers = {HELPER_HEADER: "true", "Content-Type": content_type}
        data = None if body is None else json.dumps(body)
        async with self.client.request(method, path, data=data, headers=headers) as response:
            answer = await response.json(content_type=None)
            if response.status >= 400:
                raise KubeApiError(response.status, answer)
            return answer

    async def apply(self, obj: Mapping[str, Any]) -> Body:
        """Create ``obj`` (its apiVersion and kind pick the resource; namespaced objects
        default to the ``default`` namespace); returns the stored object."""
        resource = self._resource_of(obj)
        namespace = None
        if self.emulator.resources[resource].namespaced:
            namespace = obj.get("metadata", {}).get("namespace") or "default"
        created: Body = await self.request("POST", resource_path(resource, namespace), obj)
        return created

    async def patch(
        self,
        resource: str | kmock.resource,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any] | list[Any],
        *,
        subresource: str | None = None,
    ) -> Body:
        """A merge patch (a dict) or a JSON patch (a list of ops); returns the object."""
        content_type = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        path = self.path(resource, namespace, name, subresource)
        patched: Body = await self.request("PATCH", path, patch, content_type=content_type)
        return patched

    async def delete(
        self, resource: str | kmock.resource, namespace: str | None, name: str
    ) -> Body:
        """Delete (or, with finalizers, start deleting); returns the object as it was left."""
        deleted: Body = await self.request("DELETE", self.path(resource, namespace, name))
        return deleted

    async def get(
        self, resource: str | kmock.resource, namespace: str | None, name: str
    ) -> Body | None:
        """The stored object, or None if there is none."""
        try:
            found: Body = await self.request("GET", self.path(resource, namespace, name))
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def list_objects(
        self, resource: str | kmock.resource, namespace: str | None = None
    ) -> Body:
        """The list (``items``, ``metadata.resourceVersion``), all namespaces by default."""
        listed: Body = await self.request("GET", self.path(resource, namespace))
        return listed

    def status_writes(
        self, resource: str | kmock.resource, *, with_helpers: bool = False
    ) -> list[kmock.Request]:
        """The logged POST/PUT/PATCH requests to ``.../status`` of that resource's objects,
        in order; without the helpers' own unless asked."""
        return self._writes(resource, lambda sub: sub == "status", with_helpers)

    def main_writes(
        self, resource: str | kmock.resource, *, with_helpers: bool = False
    ) -> list[kmock.Request]:
        """The logged creates and POST/PUT/PATCH requests to that resource's objects
        themselves (no subresource), in order; without the helpers' own unless asked."""
        return self._writes(resource, lambda sub: sub is None, with_helpers)

    def _writes(
        self,
        resource: str | kmock.resource,
        subresource_wanted: Callable[[str | None], bool],
        with_helpers: bool,
    ) -> list[kmock.Request]:
        wanted = self.emulator.resource_for(resource)
        methods = (kmock.method.POST, kmock.method.PUT, kmock.method.PATCH)
        return [
            request
            for request in self.emulator.requests
            if request.resource == wanted
            and request.method in methods
            and subresource_wanted(request.subresource)
            and (with_helpers or _header(request, HELPER_HEADER) is None)
        ]

    def _resource_of(self, obj: Mapping[str, Any]) -> kmock.resource:
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        for resource in self.emulator.resources:
            info = self.emulator.resources[resource]
            if (resource.group, resource.version, info.kind) == (group, version, obj.get("kind")):
                return resource
        raise LookupError(f"no declared resource serves {obj.get('apiVersion')}/{obj.get('kind')}")


@contextlib.asynccontextmanager
async def serve_kubernetes() -> AsyncIterator[KubeHandle]:
    """A fresh emulator with :func:`declare_resources`, served over HTTP on 127.0.0.1 (a
    free port) in the running event loop."""
    emulator = AdxKubernetesEmulator()
    declare_resources(emulator)
    async with emulator, kmock.Server(emulator, host=LOOPBACK) as server:
        try:
            yield KubeHandle(
                emulator=emulator, url=str(server.url).rstrip("/"), client=server.client
            )
        finally:
            # Open watches would otherwise hold the HTTP server's shutdown until its timeout.
            await emulator.close_watches()
