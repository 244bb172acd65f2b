"""Every SQL statement about principals, memberships and tokens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.core.policy_changes import (
    GrantRemoved,
    MemberAdded,
    MemberRemoved,
    PolicyChange,
    PrincipalRemoved,
    PrincipalSet,
)
from gateway.db.locks import LockClass
from gateway.db.models import GrantRow, MembershipRow, PrincipalRow, TokenRow
from gateway.db.tables import browser_sessions


def principal_set(row: PrincipalRow) -> PrincipalSet:
    """The policy change of a principal created or changed: the row as its transaction leaves it."""
    return PrincipalSet(row.id, row.kind, row.name, row.display_name, row.active, row.account_admin)


class PrincipalRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: PrincipalRow) -> PrincipalRow:
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, principal_id: int, kind: str | None = None) -> PrincipalRow | None:
        row = await self.session.get(PrincipalRow, principal_id)
        return row if row is not None and (kind is None or row.kind == kind) else None

    async def held(self, principal_id: int) -> PrincipalRow | None:
        """The principal, its row locked FOR KEY SHARE until the transaction ends (None once it is deleted): a
        deletion (`delete`, which locks the row FOR UPDATE first) waits for this transaction and then removes what
        it added naming the principal; one committed first leaves nothing to find. Before, a row added naming a
        principal whose deletion committed meanwhile failed its foreign key: 500. FOR KEY SHARE (the lock the
        foreign key's own check takes) holds back no other addition naming the principal: two calls adding the
        same members to two groups in opposite orders cannot wait on each other."""
        result = await self.session.execute(
            select(PrincipalRow)
            .where(PrincipalRow.id == principal_id)
            .with_for_update(read=True, key_share=True)  # FOR KEY SHARE (without `read`: FOR NO KEY UPDATE)
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def changing(self, principal_id: int, kind: str) -> PrincipalRow | None:
        """The principal of `kind`, its row locked FOR NO KEY UPDATE (the lock its UPDATE takes, taken from the
        read on) until the transaction ends: a deletion waits for this change, memberships and all, and then
        removes them; one committed first leaves nothing to find (None)."""
        result = await self.session.execute(
            select(PrincipalRow)
            .where(PrincipalRow.id == principal_id, PrincipalRow.kind == kind)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def by_name(self, kind: str, name: str) -> PrincipalRow | None:
        result = await self.session.execute(
            select(PrincipalRow).where(PrincipalRow.kind == kind, PrincipalRow.name == name)
        )
        return result.scalar_one_or_none()

    async def by_any_name(self, name: str) -> PrincipalRow | None:
        """The principal of any kind with this name (names are unique across kinds)."""
        result = await self.session.execute(select(PrincipalRow).where(PrincipalRow.name == name).limit(1))
        return result.scalar_one_or_none()

    async def get_or_create_user(self, name: str) -> tuple[PrincipalRow | None, bool]:
        """Users who sign in through the identity provider are provisioned on first sight, without privileges.

        (the user, whether this call created it). None when another kind of principal holds the name (possible
        only in data older than the name rules). A user this call did not create was read without a lock: it
        may be deleted or renamed by the time the caller uses it.
        """
        created = await self.session.execute(
            insert(PrincipalRow)
            .values(kind="user", name=name, display_name=name, active=True, account_admin=False)
            .on_conflict_do_nothing()
            .returning(PrincipalRow.id)
        )
        return await self.by_name("user", name), created.first() is not None

    async def of_kind(self, kind: str) -> Sequence[PrincipalRow]:
        result = await self.session.execute(
            select(PrincipalRow).where(PrincipalRow.kind == kind).order_by(PrincipalRow.id)
        )
        return result.scalars().all()

    async def all(self) -> Sequence[PrincipalRow]:
        result = await self.session.execute(select(PrincipalRow))
        return result.scalars().all()

    async def delete(self, principal_id: int) -> list[PolicyChange]:
        """Delete the principal with its grants and memberships (its tokens and sessions go by cascade).

        Answers what went of the policy, for its recorded changes: the grants and memberships (deleted here
        rather than by cascade, for their RETURNING), then the principal. Its row is locked first, so that no
        grant or membership naming it can be added meanwhile (their foreign keys wait for the lock) and then
        go by cascade unrecorded.
        """
        locked = await self.session.execute(
            select(PrincipalRow.id).where(PrincipalRow.id == principal_id).with_for_update()
        )
        if locked.scalar_one_or_none() is None:
            return []
        grants = await self.session.execute(
            delete(GrantRow)
            .where(GrantRow.principal_id == principal_id)
            .returning(GrantRow.principal_id, GrantRow.domain, GrantRow.object, GrantRow.privilege)
        )
        changes: list[PolicyChange] = [GrantRemoved(*row) for row in grants.all()]
        memberships = await self.session.execute(
            delete(MembershipRow)
            .where(or_(MembershipRow.member_id == principal_id, MembershipRow.group_id == principal_id))
            .returning(MembershipRow.member_id, MembershipRow.group_id)
        )
        changes += [MemberRemoved(*row) for row in memberships.all()]
        await self.session.execute(delete(PrincipalRow).where(PrincipalRow.id == principal_id))
        changes.append(PrincipalRemoved(principal_id))
        return changes

    async def readdress_alerts(self, old: str, new: str | None) -> int:
        """Every SQL alert's e-mail subscription to the user `old` (its address, compared as user names are: ASCII
        case aside) made one to `new`, the user's new name, or (None) removed with the user; the number of alerts
        changed. An address left behind would be shown as a recipient and never mailed, and would mail whoever is
        given the name next (gateway/alerts/recipients.py)."""
        result = await self.session.execute(
            text(
                """
                UPDATE sql_alerts SET updated_at = now(), subscriptions = (
                    SELECT COALESCE(jsonb_agg(
                        CASE WHEN lower(item->>'user_email') = CAST(:old AS text)
                             THEN jsonb_build_object('user_email', CAST(:new AS text))
                             ELSE item END
                        ORDER BY position), '[]'::jsonb)
                    FROM jsonb_array_elements(subscriptions) WITH ORDINALITY AS listed(item, position)
                    WHERE CAST(:new AS text) IS NOT NULL
                       OR lower(item->>'user_email') IS DISTINCT FROM CAST(:old AS text)
                )
                WHERE jsonb_typeof(subscriptions) = 'array' AND EXISTS (
                    SELECT 1 FROM jsonb_array_elements(subscriptions) AS listed(item)
                    WHERE lower(item->>'user_email') = CAST(:old AS text)
                )
                """
            ),
            {"old": old, "new": new},
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def lock_admins(self) -> None:
        """Serialise, across replicas until the transaction ends, every change that could take away an account
        admin (the role, the active flag, the row): the count that follows it reads every such change committed
        before, so two replicas demoting the last two admins at once cannot both find the other one left."""
        lock = {"class": int(LockClass.ACCOUNT_ADMINS)}
        await self.session.execute(text("SELECT pg_advisory_xact_lock(:class, 0)"), lock)

    async def end_sessions(self, principal_id: int) -> list[bytes]:
        """Delete every browser session of the principal; the id hashes of those it had."""
        result = await self.session.execute(
            delete(browser_sessions)
            .where(browser_sessions.c.principal_id == principal_id)
            .returning(browser_sessions.c.id_hash)
        )
        return [bytes(held) for held in result.scalars().all()]

    async def count_admins(self) -> int:
        """The active account admins with a row (the bootstrap admin token has none and is not counted)."""
        result = await self.session.execute(
            select(func.count()).select_from(PrincipalRow).where(PrincipalRow.account_admin, PrincipalRow.active)
        )
        return int(result.scalar_one())

    # -- membership ---------------------------------------------------------------------------------

    async def lock_nesting(self) -> None:
        """Serialise putting groups into groups across replicas until the transaction ends: the nesting check that
        follows reads every membership committed before it, and no other such check runs until this one's insert
        is committed or rolled back."""
        lock = {"class": int(LockClass.GROUP_NESTING)}
        await self.session.execute(text("SELECT pg_advisory_xact_lock(:class, 0)"), lock)

    async def memberships(self) -> Sequence[tuple[int, int]]:
        result = await self.session.execute(select(MembershipRow.member_id, MembershipRow.group_id))
        return [(member, group) for member, group in result.all()]

    async def members(self, group_id: int) -> Sequence[PrincipalRow]:
        result = await self.session.execute(
            select(PrincipalRow)
            .join(MembershipRow, MembershipRow.member_id == PrincipalRow.id)
            .where(MembershipRow.group_id == group_id)
            .order_by(PrincipalRow.id)
        )
        return result.scalars().all()

    async def groups_of(self, member_id: int) -> Sequence[PrincipalRow]:
        result = await self.session.execute(
            select(PrincipalRow)
            .join(MembershipRow, MembershipRow.group_id == PrincipalRow.id)
            .where(MembershipRow.member_id == member_id)
            .order_by(PrincipalRow.id)
        )
        return result.scalars().all()

    # Each change answers what it did to the rows, for the policy's recorded changes (nothing if nothing changed).

    async def add_member(self, group_id: int, member_id: int) -> list[PolicyChange]:
        result = await self.session.execute(
            insert(MembershipRow)
            .values(group_id=group_id, member_id=member_id)
            .on_conflict_do_nothing()
            .returning(MembershipRow.member_id, MembershipRow.group_id)
        )
        return [MemberAdded(*row) for row in result.all()]

    async def remove_member(self, group_id: int, member_id: int) -> list[PolicyChange]:
        result = await self.session.execute(
            delete(MembershipRow)
            .where(MembershipRow.group_id == group_id, MembershipRow.member_id == member_id)
            .returning(MembershipRow.member_id, MembershipRow.group_id)
        )
        return [MemberRemoved(*row) for row in result.all()]

    async def clear_members(self, group_id: int) -> list[PolicyChange]:
        result = await self.session.execute(
            delete(MembershipRow)
            .where(MembershipRow.group_id == group_id)
            .returning(MembershipRow.member_id, MembershipRow.group_id)
        )
        return [MemberRemoved(*row) for row in result.all()]


class TokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: TokenRow) -> None:
        self.session.add(row)
        await self.session.flush()

    async def by_hash(self, token_hash: bytes) -> TokenRow | None:
        result = await self.session.execute(select(TokenRow).where(TokenRow.token_hash == token_hash))
        return result.scalar_one_or_none()

    async def get(self, token_id: str) -> TokenRow | None:
        return await self.session.get(TokenRow, token_id)

    async def list(self, principal_id: int | None = None) -> Sequence[TokenRow]:
        statement = select(TokenRow).order_by(TokenRow.created_at)
        if principal_id is not None:
            statement = statement.where(TokenRow.principal_id == principal_id)
        result = await self.session.execute(statement)
        return result.scalars().all()

    async def delete(self, token_id: str) -> None:
        await self.session.execute(delete(TokenRow).where(TokenRow.token_id == token_id))

    async def minted_with(self, token_hash: bytes) -> Sequence[str]:
        """The ids of the tokens minted with this one, directly or through others (they go with it)."""
        minted = (
            select(TokenRow.token_id, TokenRow.token_hash)
            .where(TokenRow.parent_hash == token_hash)
            .cte("minted", recursive=True)
        )
        minted = minted.union(
            select(TokenRow.token_id, TokenRow.token_hash).join(minted, TokenRow.parent_hash == minted.c.token_hash)
        )
        result = await self.session.execute(select(minted.c.token_id).order_by(minted.c.token_id))
        return result.scalars().all()

    async def of_sessions(self, session_hashes: Sequence[bytes]) -> Sequence[tuple[str, bytes]]:
        """(id, hash) of the tokens created in these browser sessions, by id."""
        if not session_hashes:
            return []
        result = await self.session.execute(
            select(TokenRow.token_id, TokenRow.token_hash)
            .where(TokenRow.session_hash.in_(list(session_hashes)))
            .order_by(TokenRow.token_id)
        )
        return [(str(token_id), bytes(token_hash)) for token_id, token_hash in result.all()]

    async def delete_of_sessions(self, session_hashes: Sequence[bytes]) -> Sequence[str]:
        """Delete the tokens created in these browser sessions (and, by cascade, every token minted with them);
        the ids of those created in them."""
        if not session_hashes:
            return []
        result = await self.session.execute(
            delete(TokenRow).where(TokenRow.session_hash.in_(list(session_hashes))).returning(TokenRow.token_id)
        )
        return result.scalars().all()

    async def delete_expired(self, now: datetime) -> None:
        await self.session.execute(delete(TokenRow).where(TokenRow.expires_at < now))
