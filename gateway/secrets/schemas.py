"""Request and response bodies of the secrets API (`/api/2.0/secrets/...`), in the Databricks shapes.

No response body carries a secret's value: listings name keys and update times only.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Body(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


class CreateScope(_Body, kw_only=True):
    scope: str
    initial_manage_principal: str | None = None
    scope_backend_type: str | None = None  # DATABRICKS (a vault the gateway writes) or AZURE_KEYVAULT
    backend_azure_keyvault: dict[str, Any] | None = None  # the workspace's vault decides; accepted and ignored


class ScopeRef(_Body, kw_only=True):
    scope: str


class PutSecret(_Body, kw_only=True):
    scope: str
    key: str
    string_value: str | None = None
    bytes_value: str | None = None  # base64

    def __repr__(self) -> str:  # never the value, whatever prints the request
        return f"PutSecret(scope={self.scope!r}, key={self.key!r})"


class SecretRef(_Body, kw_only=True):
    scope: str
    key: str


class PutAcl(_Body, kw_only=True):
    scope: str
    principal: str
    permission: str


class AclRef(_Body, kw_only=True):
    scope: str
    principal: str


class SecretScope(_Body, kw_only=True):
    name: str
    backend_type: str  # DATABRICKS | AZURE_KEYVAULT


class ListScopesResponse(_Body, kw_only=True):
    scopes: list[SecretScope] = msgspec.field(default_factory=list)


class SecretMetadata(_Body, kw_only=True):
    key: str
    last_updated_timestamp: int


class ListSecretsResponse(_Body, kw_only=True):
    secrets: list[SecretMetadata] = msgspec.field(default_factory=list)


class AclItem(_Body, kw_only=True):
    principal: str
    permission: str  # READ | WRITE | MANAGE


class ListAclsResponse(_Body, kw_only=True):
    items: list[AclItem] = msgspec.field(default_factory=list)


class GetSecret(_Body, kw_only=True):
    """A run's read of one secret: Databricks' get-secret, plus the run that reads it.

    `key` may be `scope/key`; without a scope there or in `scope`, the workspace's default scope.
    """

    scope: str | None = None
    key: str
    run_id: str


class GetSecrets(_Body, kw_only=True):
    """A run's read of several secrets in one call: keys of `scope` (else of the workspace's default scope),
    or `scope/key` names of any scope; the answer is keyed by the names as given."""

    scope: str | None = None
    keys: list[str]
    run_id: str


class SecretValue(msgspec.Struct, kw_only=True):
    key: str
    value: str  # base64

    def __repr__(self) -> str:  # never the value
        return f"SecretValue(key={self.key!r})"


class SecretValues(msgspec.Struct, kw_only=True):
    values: dict[str, str | None]  # key -> base64, or None for a missing one

    def __repr__(self) -> str:  # never the values
        return f"SecretValues(keys={sorted(self.values)!r})"
