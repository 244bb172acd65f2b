"""After-write hook of the account-wide index: every indexed write the store accepted updates the index.

Best effort, on the pool "derived" with asynchronous commit (federation/bookkeeping.py): a failure is
counted and logged, never fails the call, and the index sync repairs what was lost.
"""

from __future__ import annotations

import asyncpg

from gateway.core.links import WorkspaceLink
from gateway.core.route_table import RouteSpec
from gateway.federation.bookkeeping import Bookkeeping
from gateway.federation.hooks import AcceptedWrite
from gateway.federation.locate import Locator
from gateway.index.writer import IndexWriter


class IndexWriteThrough:
    """Routes with the INDEXED trait; the answer is read for those whose answer names what they created."""

    def __init__(self, writer: IndexWriter, bookkeeping: Bookkeeping, locator: Locator) -> None:
        self.writer = writer
        self._bookkeeping = bookkeeping
        self._locator = locator

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.indexed

    def needs_answer(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.creates

    async def record(self, write: AcceptedWrite) -> None:
        experiment_of_run = self._locator.run_experiment(write.link)

        async def apply(conn: asyncpg.Connection) -> None:
            await self.writer.apply(
                conn,
                write.spec.name,
                write.link.workspace_id,
                write.request,
                write.response,
                write.principal,
                experiment_of_run,
            )

        # Cached run keys may belong to a lost insert: forgotten on failure.
        await self._bookkeeping.derive(write.spec.name, apply, on_failure=self.writer.forget)
