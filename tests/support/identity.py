"""Principals, tokens and grants for a test's setup, made over the gateway's own APIs as its admin.

One way for every test to create a user (SCIM), a group, a token on a user's behalf (token management)
and a grant (the permissions API). Each helper asserts that the gateway accepted the call, so a setup
fails where it went wrong; tests that verify these APIs themselves make their calls by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tests.conftest import ADMIN_TOKEN, Stack

SCIM = "/api/2.0/preview/scim/v2"
TIMEOUT = 60


def unique(prefix: str) -> str:
    """`prefix` and eight random hex digits: names no other test (or earlier run) has used."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Person:
    """A user and a personal access token of theirs."""

    name: str  # as the gateway stores it (user names are case-folded)
    id: int
    token: str

    def http(self, stack: Stack, workspace: str | None = "team-a") -> requests.Session:
        return stack.http(workspace, token=self.token)


class Admin:
    """The bootstrap admin of the gateway at `url`."""

    def __init__(self, url: str, token: str = ADMIN_TOKEN) -> None:
        self.url = url
        self.token = token

    @classmethod
    def of(cls, stack: Stack) -> Admin:
        return cls(stack.url)

    def http(self, workspace: str | None = None) -> requests.Session:
        """The admin's session. A 429 (the admin's own rate limit, spent by a module that sent it thousands of calls
        just before) is retried after its Retry-After, as a real client backs off: it is refused before anything is
        done, so retrying a POST makes nothing twice."""
        session = requests.Session()
        # Only the 429: a connection or read error is not retried (a POST the gateway read may have been made).
        backoff = Retry(
            total=8, connect=0, read=0, other=0, status_forcelist=[429], allowed_methods=None, raise_on_status=False
        )
        session.mount("http://", HTTPAdapter(max_retries=backoff))
        session.headers["Authorization"] = f"Bearer {self.token}"
        if workspace:
            session.headers["X-MLFLOW-WORKSPACE"] = workspace
        return session

    def user(self, name: str) -> int:
        """A new user (SCIM); its id."""
        created = self.http().post(f"{self.url}{SCIM}/Users", json={"userName": name}, timeout=TIMEOUT)
        assert created.status_code == 201, created.text
        return int(created.json()["id"])

    def token_for(self, user_name: str, comment: str = "tests") -> str:
        """A new token of the user's, issued by the admin on their behalf; its value."""
        issued = self.http().post(
            f"{self.url}/api/2.0/token-management/on-behalf-of/tokens",
            json={"user_name": user_name, "comment": comment},
            timeout=TIMEOUT,
        )
        assert issued.status_code == 200, issued.text
        return str(issued.json()["token_value"])

    def person(self, name: str, comment: str = "tests") -> Person:
        """A new user with a token of theirs."""
        principal_id = self.user(name)
        return Person(name.casefold(), principal_id, self.token_for(name, comment))

    def group(self, name: str, members: Iterable[int] = ()) -> int:
        """A new group (SCIM) of the principals `members`, users or groups; its id."""
        body = {"displayName": name, "members": [{"value": str(member)} for member in members]}
        created = self.http().post(f"{self.url}{SCIM}/Groups", json=body, timeout=TIMEOUT)
        assert created.status_code == 201, created.text
        return int(created.json()["id"])

    def grant(
        self,
        target: str,
        level: str,
        *,
        group: str | None = None,
        user: str | None = None,
        workspace: str | None = None,
    ) -> None:
        """Add `level` for one group or user to the object `target` names in the permissions API.

        `target` is the path after `/api/2.0/permissions/`: `workspaces/team-a`, `experiments/<id>`
        (with the experiment's `workspace`), `registered-models/<id>`.
        """
        assert (group is None) != (user is None), "name a group or a user"
        entry = {"group_name": group} if group is not None else {"user_name": user}
        granted = self.http(workspace).patch(
            f"{self.url}/api/2.0/permissions/{target}",
            json={"access_control_list": [{**entry, "permission_level": level}]},
            timeout=TIMEOUT,
        )
        assert granted.status_code == 200, granted.text
