"""Run the Alembic migrations, then give the application role its login.

The password is environment-specific, so it is applied here from ``ADX_DATABASE_URL``
rather than written into a versioned migration.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from adx_core.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str, app_role: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["app_role"] = app_role
    return config


def _owner_url(settings: Settings) -> str:
    url = settings.migration_database_url or settings.database_url
    return url.get_secret_value()


class MigrationRoleError(RuntimeError):
    pass


async def upgrade(settings: Settings, revision: str = "head") -> None:
    app_url = make_url(settings.database_url.get_secret_value())
    role = settings.app_role
    owner = make_url(_owner_url(settings)).username
    if owner == role:
        # The owner of the tables is exempt from nothing (FORCE RLS), but it can ALTER
        # them and reach the slug-lookup policy: the application must never be it.
        raise MigrationRoleError(
            f"migrations must run as the schema owner, not as the application role {role!r}: "
            "set ADX_MIGRATION_DATABASE_URL to the owner's URL"
        )
    engine = create_async_engine(_owner_url(settings))
    try:
        async with engine.begin() as connection:

            def _upgrade(sync_connection: Connection) -> None:
                config = alembic_config(_owner_url(settings), role)
                config.attributes["connection"] = sync_connection
                command.upgrade(config, revision)

            await connection.run_sync(_upgrade)
            if settings.migration_database_url is not None and app_url.password:
                # Quoting a literal is not possible with bind parameters in DDL.
                password = app_url.password.replace("'", "''")
                await connection.execute(
                    text(f"ALTER ROLE {role} WITH LOGIN PASSWORD '{password}'")
                )
    finally:
        await engine.dispose()


async def current_revision(settings: Settings) -> str | None:
    engine = create_async_engine(_owner_url(settings))
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(text("SELECT to_regclass('alembic_version')"))
            if exists is None:
                return None
            value = await connection.scalar(text("SELECT version_num FROM alembic_version"))
            return str(value) if value is not None else None
    finally:
        await engine.dispose()
