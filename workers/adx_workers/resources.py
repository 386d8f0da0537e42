"""What a worker's activities need, opened once per process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from adx_core.db.engine import Sessions, create_engine, create_sessions
from adx_core.notifications import Notifier, notifier_from_settings
from adx_core.payments import PaymentProvider, payment_provider_from_settings
from adx_core.settings import Settings
from adx_core.storage import StorageProvider, StorageRegistry


@dataclass
class WorkerResources:
    settings: Settings
    engine: AsyncEngine
    sessions: Sessions
    # Every configured provider, opened on first use; ``storage`` is the default one, where
    # new tenants' files go.
    stores: StorageRegistry
    notifier: Notifier
    payments: PaymentProvider
    graceful_shutdown: timedelta = timedelta(seconds=20)

    @classmethod
    def open(cls, settings: Settings) -> WorkerResources:
        # The notifier first: a missing SMTP or webhook setting stops the worker at start.
        notifier = notifier_from_settings(settings)
        engine = create_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            sessions=create_sessions(engine),
            stores=StorageRegistry(settings),
            notifier=notifier,
            payments=payment_provider_from_settings(settings),
        )

    @property
    def storage(self) -> StorageProvider:
        return self.stores.get()

    async def close(self) -> None:
        await self.payments.close()
        await self.stores.close()
        await self.engine.dispose()
