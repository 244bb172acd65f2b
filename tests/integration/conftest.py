"""Fixtures shared by integration modules: a local OpenID Connect issuer, and a gateway process of the stack's
account that also accepts its access tokens (a module's own, beside the stack's gateway)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.devstack import GatewayProcess
from tests.conftest import GATEWAY_ENV, Stack
from tests.support.oidc import OIDC_AUDIENCE, OidcIssuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[OidcIssuer]:
    issuer = OidcIssuer().start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def oidc_gateway(stack: Stack, issuer: OidcIssuer, workdir: Path) -> Iterator[GatewayProcess]:
    """A second gateway process of the same account that also accepts the local issuer's access tokens."""
    env = {**GATEWAY_ENV, "FEDGATE_OIDC_ISSUER": issuer.url, "FEDGATE_OIDC_AUDIENCE": OIDC_AUDIENCE}
    gateway = GatewayProcess(workdir / "fedgate.toml", env).start()
    yield gateway
    gateway.stop()
