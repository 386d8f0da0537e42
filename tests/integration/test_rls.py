"""Row-level security, checked as the application role on a real PostgreSQL.

Tenants A and B each get a user, a membership, a file and an audit entry (inserted as the
owner). Then, connected as ``adx_app``: A's scope sees only A's rows and cannot write B's,
no scope sees nothing, and the scope ends with its transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from adx_core.contracts.tenants import PLATFORM_TENANT_ID
from adx_core.db.engine import (
    InvalidTenantIdError,
    Sessions,
    create_engine,
    create_sessions,
    tenant_session,
)
from adx_core.db.models import TENANT_TABLES
from adx_core.db.repositories import TenantRepository, tenant_id_for_slug
from adx_core.settings import Settings

RLS_REFUSAL = "row-level security"


@dataclass(frozen=True)
class World:
    a: str
    b: str
    user_a: str
    user_b: str
    user_both: str


def _ids() -> World:
    return World(*(str(uuid.uuid4()) for _ in range(5)))


@pytest.fixture
async def world(settings: Settings, owner_engine: AsyncEngine) -> World:
    """Two tenants with rows in every tenant table; one user belongs to both."""
    w = _ids()
    async with owner_engine.begin() as conn:
        for tid, slug in ((w.a, "tenant-a"), (w.b, "tenant-b")):
            await conn.execute(
                text(
                    "INSERT INTO tenants (id, slug, display_name, plan, status, storage_prefix) "
                    "VALUES (CAST(:id AS uuid), :slug, :slug, 'free', 'active', :prefix)"
                ),
                {"id": tid, "slug": slug, "prefix": f"tenants/{tid}/"},
            )
        for uid, email in ((w.user_a, "a"), (w.user_b, "b"), (w.user_both, "both")):
            await conn.execute(
                text("INSERT INTO users (id, email, name) VALUES (CAST(:id AS uuid), :e, :e)"),
                {"id": uid, "e": f"{email}@example.test"},
            )
        for tid, uid in ((w.a, w.user_a), (w.b, w.user_b), (w.a, w.user_both), (w.b, w.user_both)):
            await conn.execute(
                text(
                    "INSERT INTO memberships (tenant_id, user_id, role) "
                    "VALUES (CAST(:t AS uuid), CAST(:u AS uuid), 'member')"
                ),
                {"t": tid, "u": uid},
            )
        for tid in (w.a, w.b):
            await conn.execute(
                text(
                    "INSERT INTO files (id, tenant_id, name, content_type, size_bytes, "
                    "storage_key, status) VALUES (CAST(:id AS uuid), CAST(:t AS uuid), 'f.txt', "
                    "'text/plain', 1, :key, 'ready')"
                ),
                {"id": str(uuid.uuid4()), "t": tid, "key": f"tenants/{tid}/f.txt"},
            )
            await conn.execute(
                text(
                    "INSERT INTO audit_log (tenant_id, action) "
                    "VALUES (CAST(:t AS uuid), 'test.seeded')"
                ),
                {"t": tid},
            )
            for statement in (*_SERVICE_ROWS, *_FILE_SERVICE_ROWS):
                await conn.execute(
                    text(statement),
                    {"t": tid, "u": w.user_both, "id": str(uuid.uuid4()), "k": f"k-{tid}"},
                )
    return w


# One row per table of the tenant service, for each tenant (``:t``).
_SERVICE_ROWS = (
    "INSERT INTO tenant_quotas (tenant_id, storage_bytes, files, users, db_rows, file_bytes) "
    "VALUES (CAST(:t AS uuid), 1, 1, 1, 1, 1)",
    "INSERT INTO tenant_role_permissions (tenant_id, role, permission) "
    "VALUES (CAST(:t AS uuid), 'member', 'files.read')",
    "INSERT INTO tenant_usage (tenant_id, storage_bytes, files, users, db_rows, sampled_at) "
    "VALUES (CAST(:t AS uuid), 0, 0, 0, 0, now())",
    "INSERT INTO tenant_alerts (tenant_id, key, resource, threshold_percent, usage, quota, state) "
    "VALUES (CAST(:t AS uuid), :k, 'files', 80, 8, 10, 'raised')",
    "INSERT INTO payments (id, tenant_id, idempotency_key, provider, amount_cents, currency, "
    "status) VALUES (CAST(:id AS uuid), CAST(:t AS uuid), :k, 'manual', 100, 'usd', 'created')",
    "INSERT INTO auth_sessions (id, user_id, tenant_id, expires_at) "
    "VALUES (gen_random_uuid(), CAST(:u AS uuid), CAST(:t AS uuid), now() + interval '1 hour')",
    "INSERT INTO invitations (id, tenant_id, user_id, role, expires_at) "
    "VALUES (gen_random_uuid(), CAST(:t AS uuid), CAST(:u AS uuid), 'member', now())",
    "INSERT INTO notifications_sent (key, tenant_id, template, provider) "
    "VALUES (:k, CAST(:t AS uuid), 'welcome', 'smtp')",
)


# One row per table of storage migrations, the file service and Idempotency-Key records;
# each refers to the tenant's file (or the row before it) so the foreign keys hold.
_FILE_SERVICE_ROWS = (
    "INSERT INTO storage_migrations (id, tenant_id, source, targets, prefix, delete_source,"
    " status) VALUES (CAST(:id AS uuid), CAST(:t AS uuid), 'local', '[\"s3\"]', '', false,"
    " 'running')",
    "INSERT INTO storage_migration_items (migration_id, target, key, tenant_id, size_bytes,"
    " created, state) SELECT id, 's3', :k, CAST(:t AS uuid), 1, true, 'copying'"
    " FROM storage_migrations WHERE tenant_id = CAST(:t AS uuid)",
    "INSERT INTO groups (id, tenant_id, name) VALUES (CAST(:id AS uuid), CAST(:t AS uuid), 'g')",
    "INSERT INTO group_members (group_id, user_id, tenant_id)"
    " SELECT id, CAST(:u AS uuid), CAST(:t AS uuid) FROM groups WHERE tenant_id = CAST(:t AS uuid)",
    "INSERT INTO file_shares (id, tenant_id, file_id, kind, role, token_hash)"
    " SELECT CAST(:id AS uuid), CAST(:t AS uuid), id, 'link', 'viewer', md5(:k) || md5(:k)"
    " FROM files WHERE tenant_id = CAST(:t AS uuid)",
    "INSERT INTO file_permissions (id, tenant_id, file_id, principal_kind, principal_id, role)"
    " SELECT CAST(:id AS uuid), CAST(:t AS uuid), id, 'user', CAST(:u AS uuid), 'owner'"
    " FROM files WHERE tenant_id = CAST(:t AS uuid)",
    "INSERT INTO upload_sessions (id, tenant_id, owner_id, file_id, name, content_type, length,"
    " provider, status, expires_at) VALUES (CAST(:id AS uuid), CAST(:t AS uuid),"
    " CAST(:u AS uuid), gen_random_uuid(), 'u.bin', 'application/octet-stream', 10, 'local',"
    " 'open', now() + interval '1 hour')",
    'INSERT INTO upload_parts (upload_id, "offset", tenant_id, size, sha256, key)'
    " SELECT id, 0, CAST(:t AS uuid), 1, md5(:k), :k FROM upload_sessions"
    " WHERE tenant_id = CAST(:t AS uuid)",
    "INSERT INTO idempotency_records (tenant_id, user_id, key, attempt, method, route,"
    " fingerprint, expires_at) VALUES (CAST(:t AS uuid), :u, :k, gen_random_uuid(), 'POST',"
    " '/v1/groups', repeat('f', 64), now() + interval '1 hour')",
)


async def _scalar(sessions: Sessions, tenant: str | None, sql: str, **params: Any) -> Any:
    """Run one query as the app role, in tenant scope or (``None``) in no scope at all."""
    if tenant is None:
        async with sessions() as session, session.begin():
            return (await session.execute(text(sql), params)).scalar()
    async with tenant_session(sessions, tenant) as session:
        return (await session.execute(text(sql), params)).scalar()


def _tenant_column(table: str) -> str:
    return "id" if table == "tenants" else "tenant_id"


async def test_app_role_is_not_privileged(
    settings: Settings, sessions: Sessions, owner_engine: AsyncEngine
) -> None:
    """adx_app is neither superuser nor BYPASSRLS, and owns no table (so cannot turn RLS off)."""
    async with sessions() as session:
        user = (await session.execute(text("SELECT current_user"))).scalar()
    assert user == settings.app_role == "adx_app"
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = :r"
                ),
                {"r": settings.app_role},
            )
        ).one()
        owned = (
            await conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE tableowner = :r"),
                {"r": settings.app_role},
            )
        ).scalar()
        forced = (
            (
                await conn.execute(
                    text(
                        "SELECT relname FROM pg_class WHERE relname = ANY(:t) "
                        "AND relrowsecurity AND relforcerowsecurity"
                    ),
                    {"t": [*TENANT_TABLES, "users"]},
                )
            )
            .scalars()
            .all()
        )
    assert tuple(row) == (False, False, False)
    assert owned == 0
    assert set(forced) == {*TENANT_TABLES, "users"}


async def test_app_role_cannot_switch_rls_off(world: World, sessions: Sessions) -> None:
    """Neither ALTER TABLE ... DISABLE ROW LEVEL SECURITY nor row_security=off helps."""
    with pytest.raises(DBAPIError, match="must be owner"):
        await _scalar(sessions, world.a, "ALTER TABLE files DISABLE ROW LEVEL SECURITY")
    async with tenant_session(sessions, world.a) as session:
        await session.execute(text("SET LOCAL row_security = off"))
        with pytest.raises(DBAPIError, match="row-level security"):
            await session.execute(text("SELECT count(*) FROM files"))


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_tenant_sees_only_its_own_rows(world: World, sessions: Sessions, table: str) -> None:
    """In A's scope every tenant table shows A's rows and none of B's."""
    column = _tenant_column(table)
    mine = f"SELECT count(*) FROM {table} WHERE {column} = CAST(:t AS uuid)"
    assert await _scalar(sessions, world.a, mine, t=world.a) >= 1
    assert await _scalar(sessions, world.a, mine, t=world.b) == 0
    others = f"SELECT count(*) FROM {table} WHERE {column} <> CAST(:t AS uuid)"
    assert await _scalar(sessions, world.a, others, t=world.a) == 0
    # And symmetrically for B.
    assert await _scalar(sessions, world.b, mine, t=world.a) == 0


async def test_users_are_visible_through_membership_only(world: World, sessions: Sessions) -> None:
    """A's scope sees A's users (including one shared with B), never B-only users."""
    async with tenant_session(sessions, world.a) as session:
        visible = set(
            (await session.execute(text("SELECT CAST(id AS text) FROM users"))).scalars().all()
        )
    assert visible == {world.user_a, world.user_both}
    assert (
        await _scalar(
            sessions,
            world.a,
            "SELECT count(*) FROM users WHERE id = CAST(:u AS uuid)",
            u=world.user_b,
        )
        == 0
    )


async def test_repository_lists_only_the_scoped_tenant(world: World, sessions: Sessions) -> None:
    """TenantRepository.list_visible and get return nothing of another tenant."""
    async with tenant_session(sessions, world.a) as session:
        repo = TenantRepository(session)
        assert [str(t.id) for t in await repo.list_visible()] == [world.a]
        assert await repo.get(uuid.UUID(world.b)) is None


async def _refused(sessions: Sessions, tenant: str, sql: str, **params: Any) -> None:
    with pytest.raises(DBAPIError, match=RLS_REFUSAL):
        async with tenant_session(sessions, tenant) as session:
            await session.execute(text(sql), params)


async def test_writes_into_another_tenant_are_refused(world: World, sessions: Sessions) -> None:
    """In A's scope, inserting a row for B into any tenant table fails (WITH CHECK)."""
    await _refused(
        sessions,
        world.a,
        "INSERT INTO tenants (id, slug, display_name, plan, status, storage_prefix) "
        "VALUES (CAST(:id AS uuid), 'tenant-c', 'C', 'free', 'active', 'x')",
        id=str(uuid.uuid4()),
    )
    await _refused(
        sessions,
        world.a,
        "INSERT INTO files (id, tenant_id, name, content_type, size_bytes, storage_key, status) "
        "VALUES (CAST(:id AS uuid), CAST(:t AS uuid), 'x', 'text/plain', 1, 'k', 'ready')",
        id=str(uuid.uuid4()),
        t=world.b,
    )
    await _refused(
        sessions,
        world.a,
        "INSERT INTO audit_log (tenant_id, action) VALUES (CAST(:t AS uuid), 'forged')",
        t=world.b,
    )
    await _refused(
        sessions,
        world.a,
        "INSERT INTO memberships (tenant_id, user_id, role) "
        "VALUES (CAST(:t AS uuid), CAST(:u AS uuid), 'tenant-admin')",
        t=world.b,
        u=world.user_a,
    )


async def test_rows_cannot_be_moved_to_another_tenant(world: World, sessions: Sessions) -> None:
    """An UPDATE that would hand A's row to B is refused."""
    await _refused(
        sessions,
        world.a,
        "UPDATE files SET tenant_id = CAST(:t AS uuid)",
        t=world.b,
    )
    await _refused(
        sessions,
        world.a,
        "UPDATE audit_log SET tenant_id = CAST(:t AS uuid)",
        t=world.b,
    )


async def test_other_tenants_rows_cannot_be_changed_or_deleted(
    world: World, sessions: Sessions, owner_engine: AsyncEngine
) -> None:
    """UPDATE and DELETE aimed at B's rows from A's scope touch nothing."""
    async with tenant_session(sessions, world.a) as session:
        for table in TENANT_TABLES:
            column = _tenant_column(table)
            deleted = await session.execute(
                text(f"DELETE FROM {table} WHERE {column} = CAST(:t AS uuid)"), {"t": world.b}
            )
            assert deleted.rowcount == 0, table  # type: ignore[attr-defined]
        updated = await session.execute(
            text("UPDATE users SET name = 'pwned' WHERE id = CAST(:u AS uuid)"), {"u": world.user_b}
        )
        assert updated.rowcount == 0  # type: ignore[attr-defined]
    async with owner_engine.connect() as conn:
        for table in TENANT_TABLES:
            column = _tenant_column(table)
            count = (
                await conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE {column} = CAST(:t AS uuid)"),
                    {"t": world.b},
                )
            ).scalar()
            assert count, table
        name = (
            await conn.execute(
                text("SELECT name FROM users WHERE id = CAST(:u AS uuid)"), {"u": world.user_b}
            )
        ).scalar()
    assert name == "b@example.test"


@pytest.mark.parametrize("table", [*TENANT_TABLES, "users"])
async def test_no_tenant_scope_sees_nothing(world: World, sessions: Sessions, table: str) -> None:
    """Without tenant_session the app role sees zero rows in every tenant table."""
    assert await _scalar(sessions, None, f"SELECT count(*) FROM {table}") == 0


async def test_no_tenant_scope_cannot_write(world: World, sessions: Sessions) -> None:
    """Without a scope nothing tenant-owned can be inserted either."""
    with pytest.raises(DBAPIError, match=RLS_REFUSAL):
        async with sessions() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO audit_log (tenant_id, action) "
                    "VALUES (CAST(:t AS uuid), 'unscoped')"
                ),
                {"t": world.a},
            )


async def test_owner_slug_lookup_policy_does_not_help_the_app_role(
    world: World, sessions: Sessions
) -> None:
    """The slug-lookup policy is the owner's alone: setting its flag shows the app nothing."""
    async with sessions() as session, session.begin():
        await session.execute(text("SET LOCAL adx.slug_lookup = 'on'"))
        count = (await session.execute(text("SELECT count(*) FROM tenants"))).scalar()
    assert count == 0


@pytest.fixture
async def single_connection_sessions(settings: Settings) -> AsyncIterator[Sessions]:
    """A pool of exactly one connection, so consecutive sessions share it."""
    engine = create_engine(settings.model_copy(update={"database_pool_size": 1}))
    engine.pool._max_overflow = 0  # type: ignore[attr-defined]
    try:
        yield create_sessions(engine)
    finally:
        await engine.dispose()


async def test_scope_ends_with_the_transaction(
    world: World, single_connection_sessions: Sessions
) -> None:
    """After tenant_session exits (commit or rollback), the next transaction on the same
    pooled connection has no tenant and sees nothing."""
    sessions = single_connection_sessions
    pid_sql = "SELECT pg_backend_pid()"
    async with tenant_session(sessions, world.a) as session:
        pid = (await session.execute(text(pid_sql))).scalar()
        assert (await session.execute(text("SELECT count(*) FROM files"))).scalar() == 1
    async with sessions() as session, session.begin():
        assert (await session.execute(text(pid_sql))).scalar() == pid
        setting = (
            await session.execute(text("SELECT current_setting('app.tenant_id', true)"))
        ).scalar()
        assert setting in (None, "")
        for table in (*TENANT_TABLES, "users"):
            count = (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
            assert count == 0, table

    # The same after a scope that failed and rolled back.
    with pytest.raises(RuntimeError):
        async with tenant_session(sessions, world.b):
            raise RuntimeError("fail inside the scope")
    assert await _scalar(sessions, None, "SELECT count(*) FROM files") == 0
    assert await _scalar(sessions, None, pid_sql) == pid


async def test_slug_lookup_works_for_the_app_role_and_returns_only_an_id(
    world: World, sessions: Sessions, owner_engine: AsyncEngine
) -> None:
    """adx_tenant_id_for_slug resolves any slug without a scope, and returns a bare uuid."""
    async with sessions() as session:
        assert str(await tenant_id_for_slug(session, "platform")) == PLATFORM_TENANT_ID
        assert str(await tenant_id_for_slug(session, "tenant-b")) == world.b
        assert await tenant_id_for_slug(session, "no-such-tenant") is None
        assert await tenant_id_for_slug(session, "' OR '1'='1") is None
    # From inside A's scope it still answers, and still only with the id.
    async with tenant_session(sessions, world.a) as session:
        assert str(await tenant_id_for_slug(session, "tenant-b")) == world.b
    async with owner_engine.connect() as conn:
        signature = (
            await conn.execute(
                text(
                    "SELECT format_type(prorettype, NULL), proretset FROM pg_proc "
                    "WHERE proname = 'adx_tenant_id_for_slug'"
                )
            )
        ).one()
    assert tuple(signature) == ("uuid", False)


@pytest.mark.parametrize(
    "bad",
    ["acme", "", "../x", "1; DROP TABLE tenants", "00000000-0000-4000-8000-00000000000", None, 42],
)
async def test_invalid_tenant_id_is_refused_before_the_database(bad: Any) -> None:
    """A non-UUID tenant id raises InvalidTenantIdError without opening a connection."""
    # An engine that cannot connect: reaching the database would raise something else.
    engine = create_async_engine("postgresql+asyncpg://nobody:x@127.0.0.1:9/none")
    try:
        with pytest.raises(InvalidTenantIdError):
            async with tenant_session(async_sessionmaker(engine), bad):
                pytest.fail("the scope was entered")
    finally:
        await engine.dispose()
