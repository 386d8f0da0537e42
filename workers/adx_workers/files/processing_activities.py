"""The optional steps of an upload: generate_thumbnails_activity,
extract_metadata_activity and analyze_content_activity.

Each reads the promoted file into a private temporary file (bounded by
``processing_max_bytes``), does its CPU work in a thread so the worker's event loop keeps
heartbeating, and writes only under the file's own keys, so a retry overwrites its own
output. A file they cannot open is a skipped step, not a failed upload.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio import activity

from adx_core.contracts.files import (
    ANALYZE_CONTENT_ACTIVITY,
    EXTRACT_METADATA_ACTIVITY,
    GENERATE_THUMBNAILS_ACTIVITY,
    AnalysisResult,
    MetadataResult,
    ProcessingInput,
    ThumbnailInfo,
    ThumbnailsResult,
    thumbnail_prefix,
)
from adx_core.settings import Settings
from adx_core.storage import StorageError
from adx_core.storage.provider import single_chunk
from adx_core.storage.registry import StorageRegistry
from adx_workers.common.heartbeat import beating
from adx_workers.files.inspection import (
    InspectionLimits,
    RejectedFile,
    extract_metadata,
    load_analyzer,
    make_thumbnails,
)
from adx_workers.files.spool import spooled
from adx_workers.files.storage_activities import provider_of
from adx_workers.files.transfer import SideError, as_application_error

_ANALYSABLE = frozenset({"image", "text", "pdf"})


class ProcessingActivities:
    def __init__(self, stores: StorageRegistry, settings: Settings) -> None:
        self._stores = stores
        self._settings = settings
        self._limits = InspectionLimits.from_settings(settings)
        self._analyzer = load_analyzer(settings.analyzer)

    @asynccontextmanager
    async def _local(self, source: ProcessingInput) -> AsyncIterator[Path]:
        store = provider_of(self._stores, source.location.provider)
        try:
            async with spooled(store, source.location.key) as path:
                yield path
        except StorageError as exc:
            raise as_application_error(SideError("source", exc)) from None

    def _too_large(self, source: ProcessingInput) -> bool:
        return source.size > self._settings.processing_max_bytes

    @activity.defn(name=GENERATE_THUMBNAILS_ACTIVITY)
    async def generate_thumbnails(self, source: ProcessingInput) -> ThumbnailsResult:
        if source.kind != "image":
            return ThumbnailsResult(thumbnails=[], skipped="not an image")
        if self._too_large(source):
            return ThumbnailsResult(thumbnails=[], skipped="too large to open")
        options = source.options
        async with self._local(source) as path:
            try:
                made = await beating(
                    asyncio.to_thread(
                        make_thumbnails,
                        path,
                        options.thumbnail_sizes,
                        options.thumbnail_format,
                        limits=self._limits,
                    )
                )
            except RejectedFile as exc:
                return ThumbnailsResult(thumbnails=[], skipped=str(exc))
        store = provider_of(self._stores, source.location.provider)
        prefix = thumbnail_prefix(source.tenant_id, source.file_id)
        infos: list[ThumbnailInfo] = []
        for thumbnail in made:
            key = f"{prefix}{thumbnail.size}.{thumbnail.format}"
            try:
                await store.put(
                    key, single_chunk(thumbnail.data), content_type=thumbnail.content_type
                )
            except StorageError as exc:
                raise as_application_error(SideError("target", exc)) from None
            infos.append(
                ThumbnailInfo(
                    size=thumbnail.size,
                    key=key,
                    width=thumbnail.width,
                    height=thumbnail.height,
                    content_type=thumbnail.content_type,
                    bytes=len(thumbnail.data),
                )
            )
        return ThumbnailsResult(thumbnails=infos)

    @activity.defn(name=EXTRACT_METADATA_ACTIVITY)
    async def extract_metadata(self, source: ProcessingInput) -> MetadataResult:
        base: dict[str, Any] = {
            "size_bytes": source.size,
            "content_type": source.content_type,
            "kind": source.kind,
            "sha256": source.sha256,
        }
        if source.kind not in _ANALYSABLE or self._too_large(source):
            return MetadataResult(metadata=base)
        extract = functools.partial(
            extract_metadata, content_type=source.content_type, allow_gps=source.options.allow_gps
        )
        async with self._local(source) as path:
            found = await beating(asyncio.to_thread(extract, path))
        return MetadataResult(metadata={**found, **base})

    @activity.defn(name=ANALYZE_CONTENT_ACTIVITY)
    async def analyze_content(self, source: ProcessingInput) -> AnalysisResult:
        analyzer = self._analyzer
        if source.kind not in _ANALYSABLE:
            return AnalysisResult(
                analyzer.name, [], "", skipped=f"nothing to analyse in {source.kind}"
            )
        if self._too_large(source):
            return AnalysisResult(analyzer.name, [], "", skipped="too large to open")
        async with self._local(source) as path:
            analysis = await beating(asyncio.to_thread(analyzer.analyze, path, source.content_type))
        return AnalysisResult(
            analyzer=analysis.analyzer,
            tags=list(analysis.tags),
            summary=analysis.summary,
            details=dict(analysis.details),
        )

    def all(self) -> list[Any]:
        return [self.generate_thumbnails, self.extract_metadata, self.analyze_content]
