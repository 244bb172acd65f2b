"""The client every caller of a store uses: one way to send, read JSON, page through searches and map failures.

A `StoreClient` is one store seen from one namespace (the upstream workspace sent with each call, or
none). Every failure reaches the caller as one of two exceptions:

- `Transient`: no answer (unreachable, timed out, the body dropped) or one that says "later" (5xx,
  429). Retrying the same call later may succeed; nothing was decided.
- `Refused`: the store answered 4xx. Its `status`, `error_code` and `message` are the store's; the
  same call gets the same answer.

`send` and `fetch` hand back whatever status the store answered (they raise only `Transient` for no
answer): for callers that relay an answer (failover reads) or judge the status themselves. The JSON
helpers (`get`, `post`, `call`, `pages`, `items`, `experiments`, `metric_history`) map every status.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import msgspec

from gateway.core.links import WorkspaceLink
from gateway.core.numbers import is_number
from gateway.core.ports import Body, Store, StoreResponse, StoreTimedOut, StoreUnreachable

JSON_HEADERS = (("content-type", "application/json"),)
EXPERIMENTS_PAGE = 1000
HISTORY_PAGE = 25000


class Transient(Exception):
    """No answer, or a 5xx or 429: try again later. `status` is None when the store did not answer."""

    def __init__(self, description: str, *, status: int | None = None) -> None:
        super().__init__(description)
        self.status = status


class Refused(Exception):
    """The store said no (4xx): `status`, `error_code` and `message` as it answered them.

    Also raised by callers for refusals of their own (an entry that can no longer be applied, say):
    those carry only the description.
    """

    def __init__(self, description: str, *, status: int = 0, error_code: str = "", message: str = "") -> None:
        super().__init__(description)
        self.status = status
        self.error_code = error_code
        self.message = message

    @property
    def not_found(self) -> bool:
        """The store has no such object (404, or MLflow's RESOURCE_DOES_NOT_EXIST under another status)."""
        return self.status == 404 or self.error_code == "RESOURCE_DOES_NOT_EXIST"

    @property
    def already_exists(self) -> bool:
        """The store refused to create what it already holds (RESOURCE_ALREADY_EXISTS and the like)."""
        return "ALREADY_EXISTS" in self.error_code


class StoreClient:
    """One store, in one of its namespaces; `label` names it in failure descriptions ("central store").

    `timeout_seconds` bounds each call (until its whole answer is read; until the answer starts, for
    `send`): a call over budget raises `Transient`. None leaves it to the store's own timeouts.
    """

    __slots__ = ("label", "store", "timeout_seconds", "workspace")

    def __init__(
        self, store: Store, workspace: str | None = None, label: str = "", *, timeout_seconds: float | None = None
    ) -> None:
        self.store = store
        self.workspace = workspace
        self.label = label or f"store {store.name}"
        self.timeout_seconds = timeout_seconds

    # -- answers as they come -------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Sequence[tuple[str, str]] = (),
        body: Body = None,
        idempotent: bool = False,
    ) -> StoreResponse:
        """Send one call; the answer, whatever its status, unread. `Transient` when none came.

        The caller reads or releases the answer; reading it may still raise `StoreUnreachable` (use
        `fetch` or `document` to have that mapped too).
        """
        async with self._budget():
            return await self._request(method, path, query, headers, body, idempotent)

    async def fetch(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        idempotent: bool = False,
    ) -> tuple[int, bytes]:
        """(status, whole body) of one call, whatever the status; `Transient` when no whole answer came."""
        async with self._budget():
            response = await self._request(method, path, query, headers, body, idempotent)
            return response.status, await self._read(response)

    async def ping(self) -> int:
        """The status `/health` answers (200: healthy); `Transient` when the store does not answer."""
        async with self._budget():
            response = await self._request("GET", "/health", "", (), None, True)
            response.release()
            return response.status

    # -- JSON -----------------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        query: Mapping[str, Any] | None = None,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        """One call with a JSON body (or none), its answer decoded; every failure mapped (module docstring).

        A 2xx answer that is not a JSON object reads as `{}`; one that starts like an object but is not
        JSON raises `msgspec.DecodeError` (a `ValueError`): the store answered in a shape MLflow never sends.
        """
        status, raw = await self.fetch(
            method,
            path,
            query=urlencode(query) if query else "",
            headers=JSON_HEADERS if body is not None else (),
            body=msgspec.json.encode(body) if body is not None else None,
            idempotent=idempotent,
        )
        return self.decode(status, raw)

    async def get(self, path: str, query: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A GET (always safe to repeat), its JSON answer decoded; failures mapped."""
        return await self.call("GET", path, query=query, idempotent=True)

    async def post(self, path: str, body: Mapping[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """A POST of a JSON body, its JSON answer decoded; failures mapped. `idempotent`: safe to resend."""
        return await self.call("POST", path, body, idempotent=idempotent)

    async def document(self, response: StoreResponse) -> dict[str, Any]:
        """Read an answer `send` returned and decode it as `call` would (mapping its status)."""
        return self.decode(response.status, await self._read(response))

    def decode(self, status: int, raw: bytes) -> dict[str, Any]:
        """The JSON object of a 2xx answer; `Transient` for 5xx and 429, `Refused` for any other status (4xx)."""
        if status >= 500 or status == 429:
            raise Transient(f"{self.label} answered {status}: {raw[:300]!r}", status=status)
        if not 200 <= status < 300:
            error_code, message = _error_of(raw)
            described = f"{error_code}: {message}" if error_code else message
            raise Refused(
                f"{self.label} refused ({status}): {described}"[:1000],
                status=status,
                error_code=error_code,
                message=message,
            )
        if raw[:1] != b"{":
            return {}
        document = msgspec.json.decode(raw)
        return document if isinstance(document, dict) else {}

    # -- pages ----------------------------------------------------------------------------------------

    async def pages(
        self, method: str, path: str, params: Mapping[str, Any], *, page_token: str = ""
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a paginated read, from `page_token` on (the first page when empty).

        `params` go in the query of a GET and in the JSON body of anything else (searches are POSTs
        that change nothing, so they are resent after a dropped connection). Each page's
        `next_page_token` (absent on the last page) is where a reader cut short resumes.
        """
        token = page_token
        while True:
            asked = {**params, "page_token": token} if token else params
            if method == "GET":
                page = await self.get(path, asked)
            else:
                page = await self.call(method, path, asked, idempotent=True)
            yield page
            token = str(page.get("next_page_token") or "")
            if not token:
                return

    async def items(
        self, method: str, path: str, params: Mapping[str, Any], field: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item a search answers (the `field` list of each page), page after page, as `pages` reads them.

        A refusal of any page (the first or a later one) is raised as `Refused`, never read as the end of the
        results: what a refusal means (nothing to search in, say) is for the caller to decide.
        """
        async for page in self.pages(method, path, params):
            for item in page.get(field) or []:
                yield item

    async def experiments(self) -> list[dict[str, Any]]:
        """Every experiment of the namespace (deleted ones too), in `id_order`."""
        found: list[dict[str, Any]] = []
        search = {"max_results": EXPERIMENTS_PAGE, "view_type": "ALL"}
        async for page in self.pages("POST", "/api/2.0/mlflow/experiments/search", search):
            found.extend(page.get("experiments") or [])
        return sorted(found, key=lambda experiment: id_order(str(experiment["experiment_id"])))

    async def metric_history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        """Every point of one metric of a run, in the store's order."""
        points: list[dict[str, Any]] = []
        query = {"run_id": run_id, "metric_key": key, "max_results": str(HISTORY_PAGE)}
        async for page in self.pages("GET", "/api/2.0/mlflow/metrics/get-history", query):
            points.extend(page.get("metrics") or [])
        return points

    # -- internals ------------------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, query: str, headers: Sequence[tuple[str, str]], body: Body, idempotent: bool
    ) -> StoreResponse:
        try:
            return await self.store.request(
                method, path, query=query, headers=headers, body=body, workspace=self.workspace, idempotent=idempotent
            )
        except (StoreUnreachable, StoreTimedOut) as exc:
            raise Transient(f"{self.label} unreachable: {exc}") from exc

    async def _read(self, response: StoreResponse) -> bytes:
        try:
            return await response.read()
        except (StoreUnreachable, StoreTimedOut) as exc:
            raise Transient(f"{self.label} dropped its answer: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _budget(self) -> AsyncIterator[None]:
        """The call's time budget (`timeout_seconds`); running out of it is `Transient`."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                yield
        except TimeoutError as exc:
            raise Transient(f"{self.label} did not answer within {self.timeout_seconds} s") from exc


def own_store(stores: Mapping[str, Store], link: WorkspaceLink) -> StoreClient:
    """The store a link's calls go to, in the link's upstream workspace."""
    return StoreClient(stores[link.store], link.upstream_workspace, "workspace store")


def central_store(stores: Mapping[str, Store], link: WorkspaceLink) -> StoreClient:
    """Where a dual link's copies live: the central store, in the copies' namespace."""
    if link.mirror is None:
        raise ValueError(f"workspace {link.name} is not linked in dual mode")
    return StoreClient(stores[link.mirror], link.mirror_workspace, "central store")


def id_order(experiment_id: str) -> tuple[int, str]:
    """Numeric ids in numeric order; any other id after them (stores other than MLflow's may use them)."""
    return (int(experiment_id), "") if is_number(experiment_id) else (1 << 62, experiment_id)


def _error_of(raw: bytes) -> tuple[str, str]:
    """(error_code, message) of an MLflow error answer; ("", the text) for any other body."""
    with contextlib.suppress(msgspec.DecodeError):
        document = msgspec.json.decode(raw)
        if isinstance(document, dict) and ("error_code" in document or "message" in document):
            return str(document.get("error_code") or ""), str(document.get("message") or "")[:500]
    return "", raw[:500].decode(errors="replace")
