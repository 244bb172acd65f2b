"""Workspace moves: the one protocol through which each package carries or drops its own rows.

A workspace's rows elsewhere (the dual outbox, id map and reconcile progress; the account-wide index;
its grants and registered-model ids) are keyed by its account-wide id, and many name objects of its
store. When an admin (or the config file) points the workspace at another store or upstream workspace,
gives it another id or another vault, or unlinks it, the workspace service calls every registered hook inside the one
transaction that changes the link, so the link and the rows it implies change together or not at all.
Each hook runs only SQL on its own package's tables; the composition root (`gateway/app.py`) registers
them.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession


class WorkspaceMoveHook(Protocol):
    async def check_store_move(self, session: AsyncSession, workspace: str, workspace_id: int) -> None:
        """Before the workspace's data starts coming from another store: raise a GatewayError to refuse it.

        Called once before the store is asked to verify the new link (to fail fast) and again under
        the links lock in the transaction that moves it (what counted may have changed in between).
        """

    async def check_vault_change(
        self, session: AsyncSession, workspace: str, workspace_id: int, before: str, after: str
    ) -> None:
        """Before the workspace's secret scopes are created in vault `after` instead of `before`: raise a
        GatewayError to refuse it. Called like `check_store_move`, before and under the links lock."""

    async def store_moved(self, session: AsyncSession, workspace_id: int) -> str | None:
        """The workspace (under `workspace_id`, its id before the change) now reads another store.

        Drop what was derived from the old store (the new one numbers its objects anew); a sentence
        for the admin's answer when something they could have wanted was dropped, else None.
        """

    async def renumbered(self, session: AsyncSession, old_id: int, new_id: int) -> None:
        """New account-wide id: carry every row of `old_id` (left after `store_moved`, if the store changed
        too) over to `new_id`."""

    async def unlinked(self, session: AsyncSession, workspace_id: int) -> str | None:
        """The workspace is unlinked (after `check_store_move` let it go): drop every row of `workspace_id`,
        so that nothing of it is inherited by a workspace linked later under the same id. A sentence for
        the admin's answer when something was dropped, else None."""
