"""What a worker's activities need, opened once per process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from adx_core.db.engine import Sessions, create_engine, create_sessions
from adx_core.settings import Settings
from adx_core.storage import LocalStorage, StorageProvider


@dataclass
class WorkerResources:
    engine: AsyncEngine
    sessions: Sessions
    storage: StorageProvider
    graceful_shutdown: timedelta = timedelta(seconds=20)

    @classmethod
    def open(cls, settings: Settings) -> WorkerResources:
        engine = create_engine(settings)
        return cls(
            engine=engine,
            sessions=create_sessions(engine),
            storage=LocalStorage(settings.storage_root),
        )

    async def close(self) -> None:
        await self.engine.dispose()
