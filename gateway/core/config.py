"""Typed settings: one msgspec Struct tree decoded from fedgate.toml, overridable by FEDGATE_* variables."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from gateway.core.destinations import DestinationError, parse_allowed
from gateway.core.links import Namespace, store_identity

WORKSPACE_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
RESERVED_WORKSPACE_NAMES = frozenset({"account", "workspaces", "api", "ajax-api", "static-files"})
STORE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
# Secret scope and key names, as Databricks has them (a workspace's default scope is one), and one name every vault
# holds: not `.` or `..` alone, path segments OpenBao resolves (the built-in vault kept them, so a scope could not
# move to another vault, and one answer differed by the workspace's vault). The client has its own copy.
SECRET_NAME_RE = re.compile(r"^(?!\.\.?\Z)[A-Za-z0-9_.-]{1,128}\Z")
SECRET_NAME_RULE = "1 to 128 letters, digits, '_', '-' and '.', and not '.' or '..'"
MAX_OIDC_LEEWAY_SECONDS = 300  # clock skew, not a longer life for expired tokens

# Environment variables that are not settings keys.
# The built-in vault's keys (gateway/core/sealing.py): credentials, read from the environment only.
VAULT_KEYS_ENV = "FEDGATE_VAULT_KEYS"
VAULT_KEYS_FILE_ENV = "FEDGATE_VAULT_KEYS_FILE"
# The clients' own variables: the `fedgate` commands' gateway and token (gateway/cli), a run's secret scope
# (gateway/client/secrets.py). A shell set up to use the gateway may also start one; the server ignores them.
CLIENT_ENV = frozenset({"FEDGATE_URL", "FEDGATE_TOKEN", "FEDGATE_SECRET_SCOPE"})
# FEDGATE_* variables that are not overrides of settings.
SPECIAL_ENV = frozenset({"FEDGATE_CONFIG", "FEDGATE_ADMIN_TOKEN", VAULT_KEYS_ENV, VAULT_KEYS_FILE_ENV}) | CLIENT_ENV
_SIMPLE_SECTIONS = (
    "account",
    "server",
    "database",
    "central",
    "oidc",
    "tokens",
    "secrets",
    "ui",
    "outbound",
    "alerts",
    "smtp",
)
# Signature algorithms an OIDC token may use: asymmetric only, so a public key can never act as an HMAC secret.
OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# An entry of alerts.allowed_recipients: an address, or `@` and a domain (every address of it).
ALLOWED_RECIPIENT_RE = re.compile(r"^([^@\s,;<>]+)?@[^@\s,;<>.]+(\.[^@\s,;<>.]+)+\Z")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

LinkMode = Literal["workspace", "dual", "central"]


class ConfigError(ValueError):
    """A configuration problem, reported at start-up with the key it concerns."""


class _Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class AccountSettings(_Settings):
    id: str = "0"


class ServerSettings(_Settings):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    # JSON API bodies; MLflow's own limit for log-batch is 1 MB, datasets and traces can be larger.
    max_json_body_bytes: int = 32 * 1024 * 1024
    # Artifact uploads stream through; 0 means no limit of the gateway's own.
    max_artifact_body_bytes: int = 0
    access_log: bool = True
    # Backstop of LISTEN/NOTIFY: how often a replica checks the policy version itself.
    policy_poll_seconds: float = 2.0
    # Backstop of LISTEN/NOTIFY: how often a replica checks the workspace links itself.
    link_poll_seconds: float = 5.0
    # Changes are applied as they come; the whole policy is also loaded this often, as a safety net.
    policy_rebuild_seconds: float = 600.0
    # Dual workspaces: keys (runs, experiments) this process relays to the central store at once.
    relay_workers: int = 4
    # Dual workspaces: an entry the central store refuses (4xx) this many times becomes a dead letter.
    outbox_max_refusals: int = 5
    # Dual workspaces: entries applied to the central store are kept this many days, then deleted (pending
    # entries and dead letters never are; docs/operations.md, Retention).
    outbox_history_days: int = 7
    # Registry webhooks (docs/registry.md): how often each process looks for due deliveries besides being
    # notified, the first retry's delay (doubling, at most an hour), the attempts before a delivery fails,
    # and how long one POST may take; delivered and failed deliveries are kept this many days after their
    # last attempt (pending ones until they settle).
    webhook_poll_seconds: float = 5.0
    webhook_retry_seconds: float = 10.0
    webhook_max_attempts: int = 8
    webhook_timeout_seconds: float = 10.0
    webhook_history_days: int = 30
    # Dual workspaces: flush each outbox entry to disk before answering (false: asynchronous commit,
    # about half the added latency; a database crash may then leave the last entries to the reconciler).
    outbox_durable_commit: bool = True
    # Dual workspaces: how often recently active runs are compared with their central copies (0: never).
    reconcile_interval_seconds: float = 300.0
    # SQL statements (/api/2.0/sql/statements): PostgreSQL cancels a statement running longer than this.
    sql_statement_timeout_seconds: float = 30.0
    # Searches of the `account` scope: PostgreSQL cancels one running longer than this (504 DEADLINE_EXCEEDED).
    account_search_timeout_seconds: float = 10.0
    # SQL statements: at most this many rows are kept of a result (the manifest then says truncated).
    sql_row_cap: int = 10_000
    # SQL statements: at most this many PENDING or RUNNING at once per principal, counted account-wide (every
    # replica's); one more is refused 429 RESOURCE_EXHAUSTED with Retry-After. Above a console dashboards page's
    # parallel queries (5). Scheduled alert evaluations are not refused (alerts.concurrency bounds them) but
    # count. 0 turns the cap off.
    sql_max_statements_per_principal: int = 8
    # SQL statements: memory one sort or hash (join, aggregate, DISTINCT, window) may use before it spills to
    # temporary files (PostgreSQL's work_mem, with hash_mem_multiplier 1), in MiB.
    sql_work_mem_mb: int = 16
    # SQL statements: temporary files one statement may write in all (PostgreSQL's temp_file_limit), in MiB; past
    # it the statement fails RESOURCE_EXHAUSTED. 0: no limit. The database login must be a superuser or hold
    # `GRANT SET ON PARAMETER temp_file_limit` (PostgreSQL 15+); without, statements run unlimited and say so in
    # the log.
    sql_temp_file_limit_mb: int = 256
    # SQL statements: what one principal's stored results (kept 24 hours) may hold in all, in MiB; a result
    # recorded past it closes the principal's oldest ones (state CLOSED, result gone). 0: no bound.
    sql_results_mb_per_principal: int = 256
    # The account-wide index: how often each workspace's store is compared with it (0: never; a newly
    # linked workspace is backfilled within seconds either way unless this is 0).
    index_sync_interval_seconds: float = 300.0
    # The account-wide index is written through on every forwarded tracking write (false: only the sync
    # job fills it, up to `index_sync_interval_seconds` late).
    index_write_through: bool = True
    # Anonymous denials (a 401: no credentials, or ones that do not authenticate) per client address, in a
    # token bucket of each replica: `anonymous_denials_burst` at once, refilled at
    # `anonymous_denials_per_second`; past that 429 with Retry-After. A valid credential is never limited.
    # Generous by default (one address may be a NAT or a CI runner); 0 per second turns the limit off.
    anonymous_denials_per_second: float = 20.0
    anonymous_denials_burst: int = 200
    # Life cycle (docs/operations.md). On SIGTERM the replica reports itself unready and keeps serving for
    # `shutdown_delay_seconds` (for load balancers to stop sending it requests), then stops accepting
    # connections and gives requests in flight (artifact streams included) `shutdown_grace_seconds` to finish.
    shutdown_delay_seconds: float = 0.0
    shutdown_grace_seconds: float = 30.0
    # How often each store's health is checked for /health/stores and fedgate_store_up (never for readiness).
    store_check_interval_seconds: float = 15.0
    # Overload protection, per worker process (docs/operations.md): at most `max_in_flight` requests are
    # worked on at once, at most `max_queued` more wait (each at most `queue_wait_seconds`) for one of them
    # to end; past either the request answers 503 with Retry-After. 0 turns the cap off.
    max_in_flight: int = 256
    max_queued: int = 1024
    queue_wait_seconds: float = 10.0
    # Requests per authenticated principal in a token bucket of each worker: `principal_burst` at once,
    # refilled at `principal_requests_per_second`; past that 429 with Retry-After. 0 turns the limit off.
    principal_requests_per_second: float = 200.0
    principal_burst: int = 400
    # Slow or oversized requests (docs/operations.md, "Slow and oversized requests"): a request's head (request
    # line and headers) must come whole within `request_head_seconds` of its first byte, or of the connection's
    # opening for its first request, and be at most `max_request_head_bytes` (431; 414 for the URL alone); its
    # body may take `request_body_seconds` plus one second per `request_body_min_bytes_per_second` bytes
    # received (while the gateway itself is not holding the reading back). Past a limit: 408, connection closed.
    request_head_seconds: float = 30.0
    max_request_head_bytes: int = 64 * 1024
    request_body_seconds: float = 30.0
    request_body_min_bytes_per_second: int = 1024


class DatabaseSettings(_Settings):
    url: str = ""
    data_dir: str = ".fedgate"
    pool_size: int = 10
    # Start-up waits this long for the database to answer (logging each attempt), then gives up.
    connect_timeout_seconds: float = 60.0
    # While serving, the longest the gateway waits on the database for one step before answering 503
    # TEMPORARILY_UNAVAILABLE (docs/operations.md, "A database that does not answer"): opening a connection, a free
    # connection of a pool, the check of a pooled connection before use, and each statement of the pools that run
    # single short statements (write bookkeeping, a run's secret reads). asyncpg's own connect timeout is 60 s and
    # its statements have none, so a paused or stalled PostgreSQL held every such call for a minute or for ever.
    timeout_seconds: float = 5.0
    # `fedgate serve` migrates the schema itself (under an advisory lock). false: it only checks the schema and
    # refuses to start on an older one (a migration Job runs `fedgate db upgrade` before the rollout).
    migrate_on_start: bool = True


class NoAuth(_Settings, tag_field="kind", tag="none"):
    pass


class BasicAuth(_Settings, tag_field="kind", tag="basic"):
    username: str
    password_env: str = ""
    password_file: str = ""


class BearerAuth(_Settings, tag_field="kind", tag="bearer"):
    token_env: str = ""
    token_file: str = ""


class OAuth2ClientCredentials(_Settings, tag_field="kind", tag="oauth2-client-credentials"):
    client_id: str
    client_secret_env: str = ""
    client_secret_file: str = ""
    # Either a token URL, or a provider preset that derives it.
    token_url: str = ""
    provider: Literal["", "databricks", "entra"] = ""
    tenant_id: str = ""  # entra
    scope: str = ""


StoreAuth = NoAuth | BasicAuth | BearerAuth | OAuth2ClientCredentials


class StoreSettings(_Settings):
    url: str
    auth: StoreAuth = msgspec.field(default_factory=NoAuth)
    # The store is an MLflow server started with --enable-workspaces: address it with X-MLFLOW-WORKSPACE.
    workspaces: bool = False
    # false: the store has no model version stages (the registry workflow records a version's stage as the
    # tag `fedgate.stage` and the alias `staging` or `production`; docs/registry.md).
    registry_stages: bool = True
    timeout_seconds: float = 120.0
    connect_timeout_seconds: float = 5.0
    max_connections: int = 100


class VaultToken(_Settings, tag_field="method", tag="token"):
    token_env: str = ""
    token_file: str = ""


class VaultAppRole(_Settings, tag_field="method", tag="approle"):
    role_id: str
    secret_id_env: str = ""
    secret_id_file: str = ""
    mount: str = "approle"


class VaultKubernetes(_Settings, tag_field="method", tag="kubernetes"):
    role: str
    jwt_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    mount: str = "kubernetes"


class BuiltinVaultSettings(_Settings, tag_field="kind", tag="builtin"):
    """Values sealed in the gateway's PostgreSQL; keys from FEDGATE_VAULT_KEYS or FEDGATE_VAULT_KEYS_FILE."""


class OpenBaoVaultSettings(_Settings, tag_field="kind", tag="openbao"):
    """OpenBao or HashiCorp Vault, KV version 2."""

    address: str
    auth: VaultToken | VaultAppRole | VaultKubernetes
    mount: str = "secret"
    prefix: str = "fedgate"
    namespace: str = ""
    timeout_seconds: float = 10.0


class AzureKeyVaultSettings(_Settings, tag_field="kind", tag="azure-keyvault"):
    """Azure Key Vault, read-only through the gateway; OAuth2 client credentials of an Entra application."""

    vault_url: str
    tenant_id: str
    client_id: str
    client_secret_env: str = ""
    client_secret_file: str = ""
    authority_host: str = "https://login.microsoftonline.com"
    timeout_seconds: float = 10.0


VaultSettings = BuiltinVaultSettings | OpenBaoVaultSettings | AzureKeyVaultSettings
# The vault of a workspace that names none, sealed with the built-in keys.
BUILTIN_VAULT = "builtin"


def builtin_vault_configured(vaults: Mapping[str, object], environ: Mapping[str, str]) -> bool:
    """The built-in vault is served when its keys are set (or it is declared, which then needs them)."""
    return VAULT_KEYS_ENV in environ or VAULT_KEYS_FILE_ENV in environ or BUILTIN_VAULT in vaults


# The longest an operator may let a replica keep a vault's values in memory ([secrets] cache_seconds).
MAX_SECRET_CACHE_SECONDS = 300.0
# The longest a replica may trust its own check that a run is RUNNING ([secrets] run_check_seconds).
MAX_RUN_CHECK_SECONDS = 60.0
# The longest a caller may be locked out of writing to runs that read a secret ([secrets] leak_window_seconds).
MAX_LEAK_WINDOW_SECONDS = 7 * 24 * 3600.0


class SecretsSettings(_Settings):
    """Secret scopes: how a run's reads of values are served (docs/secrets.md)."""

    # Keep the values a run read (and missing ones) in each replica's memory for this long, so later reads
    # do not ask the vault; 0 (the default): nothing is kept beyond one request. At most 300. Authorization
    # is evaluated on every read either way; another replica's change is seen here up to this late.
    cache_seconds: float = 0.0
    # Bounds of that cache per vault and replica: values, and bytes of values; least recently used go first.
    cache_max_entries: int = 10_000
    cache_max_bytes: int = 32 * 1024 * 1024
    # How long a worker trusts its store's answer that a run is RUNNING, for the run's later reads, while no
    # call through the gateway changed the run's state (gateway/secrets/runstate.py). A run ended in its store
    # without the gateway is seen up to this late; 0: the store is asked on every read. At most 60.
    run_check_seconds: float = 5.0
    # The leak guard's answers to a caller who may edit a run that read a secret but holds no permission on
    # its scope tell whether a write held the value: a guessing oracle for a short value. Per such caller and
    # scope, across replicas (gateway/secrets/probes.py): after `leak_refusals` refused writes its writes of text
    # to runs that read the scope are refused for `leak_window_seconds`; and they may carry at most
    # `leak_text_bytes` of text per window, refused or not.
    leak_refusals: int = 3
    leak_text_bytes: int = 16 * 1024
    leak_window_seconds: float = 3600.0


class OutboundSettings(_Settings):
    """Where a workspace may make its store send requests: webhooks, AI-gateway providers (docs/security.md)."""

    # URL prefixes (`https://hooks.example.com/mlflow/`) or hosts (`api.openai.com`, meaning https and any
    # path); empty (the default): a webhook or provider destination is refused. From the environment:
    # FEDGATE_OUTBOUND_ALLOWED_DESTINATIONS, comma-separated.
    allowed_destinations: list[str] = msgspec.field(default_factory=list)


class AlertsSettings(_Settings):
    """SQL alerts (docs/console.md, "Alerts"): their scheduler and notifications, in every gateway process."""

    # How often each process looks for due alerts and due notifications (it also wakes for its own).
    poll_seconds: float = 5.0
    # No schedule may fire more often than this. The tests lower it to 1 to use schedules of seconds; in
    # production a query every few seconds is a load, not an alert.
    min_interval_seconds: float = 60.0
    # Alerts one process evaluates at once.
    concurrency: int = 4
    # Notifications: the first retry's delay (doubling, at most an hour), the attempts before one fails, and
    # how long one webhook POST or SMTP conversation may take.
    retry_seconds: float = 10.0
    max_attempts: int = 8
    timeout_seconds: float = 10.0
    # Evaluations are kept this many days, and delivered or failed notifications this many days after their
    # last attempt (pending ones until they settle).
    history_days: int = 30
    # Whom an alert may e-mail besides the account's active users (their names are their addresses): exact
    # addresses (`oncall@example.com`) or whole domains (`@alerts.example.com`, not its subdomains), without
    # regard to case. Empty (the default): users of the account only. Checked when an alert is saved and before
    # each e-mail (docs/sql.md, "Alerts"). From the environment: FEDGATE_ALERTS_ALLOWED_RECIPIENTS, comma-separated.
    allowed_recipients: list[str] = msgspec.field(default_factory=list)


class SmtpSettings(_Settings):
    """The SMTP server alerts send e-mail through; no e-mail subscriptions while `host` is empty."""

    host: str = ""
    port: int = 587
    from_address: str = ""  # the From of every alert e-mail
    starttls: bool = True  # upgrade the connection with STARTTLS (port 587)
    tls: bool = False  # TLS from the first byte instead (port 465)
    username: str = ""  # log in when set; the password comes from the environment or a file, never this file
    password_env: str = ""
    password_file: str = ""


class CentralSettings(_Settings):
    store: str = ""


class WorkspaceSettings(_Settings):
    name: str
    id: str
    store: str = ""
    mode: LinkMode = "workspace"
    # Name of the workspace on an upstream MLflow server with workspaces; defaults to `name`.
    upstream_workspace: str = ""
    description: str = ""
    # Where the values of the workspace's secret scopes live: a name under [vaults]; "" is the built-in vault.
    vault: str = ""
    # The scope a run's secret read uses when it names none (docs/secrets.md); "" for none.
    default_secret_scope: str = ""


class OidcSettings(_Settings):
    """Bearer tokens from an OpenID Connect provider; off while `issuer` is empty."""

    issuer: str = ""
    audience: str = ""
    username_claim: str = "email"
    groups_claim: str = "groups"
    algorithms: list[str] = msgspec.field(default_factory=lambda: list(OIDC_ALGORITHMS))
    leeway_seconds: int = 60
    jwks_cache_seconds: int = 600
    jwks_min_refetch_seconds: int = 30
    # Browser sign-in to the web UI with the provider (authorization code flow with PKCE): the client the
    # provider registered for the gateway, with redirect URI <public URL>/fedgate/sign-in/callback. Empty:
    # the UI's sign-in page takes personal access tokens only. The secret is optional (a public client).
    client_id: str = ""
    client_secret_env: str = ""
    client_secret_file: str = ""
    scopes: str = "openid email profile"

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)

    @property
    def browser_sign_in(self) -> bool:
        return bool(self.issuer and self.client_id)


class TokenSettings(_Settings):
    """Personal access tokens: lifetimes in seconds. A token never outlives the credential that created it."""

    # A token created without `lifetime_seconds` (or with 0 or -1, Databricks' "no expiry") gets this one.
    default_lifetime_seconds: int = 90 * 24 * 3600
    # No token may be created with a longer lifetime; there are no tokens without an expiry.
    max_lifetime_seconds: int = 730 * 24 * 3600


class UiSettings(_Settings):
    """The MLflow web UI served by the gateway behind browser sign-in (docs/ui.md)."""

    enabled: bool = True  # serve the UI when its build is installed (the `ui` extra)
    # The URL people open, e.g. "https://mlflow.example.com": the origin cross-site checks compare with, the
    # OIDC redirect URI's base, and (https) Secure `__Host-` cookies. Empty: taken from each request (Host).
    public_url: str = ""
    session_idle_seconds: int = 3600  # a session unused this long ends
    session_max_seconds: int = 12 * 3600  # and every session ends this long after sign-in


class Settings(_Settings):
    account: AccountSettings = msgspec.field(default_factory=AccountSettings)
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    stores: dict[str, StoreSettings] = msgspec.field(default_factory=dict)
    vaults: dict[str, VaultSettings] = msgspec.field(default_factory=dict)
    central: CentralSettings = msgspec.field(default_factory=CentralSettings)
    workspaces: list[WorkspaceSettings] = msgspec.field(default_factory=list)
    oidc: OidcSettings = msgspec.field(default_factory=OidcSettings)
    tokens: TokenSettings = msgspec.field(default_factory=TokenSettings)
    secrets: SecretsSettings = msgspec.field(default_factory=SecretsSettings)
    ui: UiSettings = msgspec.field(default_factory=UiSettings)
    outbound: OutboundSettings = msgspec.field(default_factory=OutboundSettings)
    alerts: AlertsSettings = msgspec.field(default_factory=AlertsSettings)
    smtp: SmtpSettings = msgspec.field(default_factory=SmtpSettings)
    admin_token: str = ""  # only from FEDGATE_ADMIN_TOKEN, never from the file


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (or FEDGATE_CONFIG), apply FEDGATE_* overrides, validate, and return settings."""
    env = os.environ if environ is None else environ
    path = path or env.get("FEDGATE_CONFIG") or None
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    if "admin_token" in raw:
        raise ConfigError("admin_token may not be set in the config file; use FEDGATE_ADMIN_TOKEN")
    _apply_env_overrides(raw, env)
    outbound = raw.get("outbound")
    if isinstance(outbound, dict) and isinstance(outbound.get("allowed_destinations"), str):
        # FEDGATE_OUTBOUND_ALLOWED_DESTINATIONS: a comma-separated list
        listed = outbound["allowed_destinations"].split(",")
        outbound["allowed_destinations"] = [entry.strip() for entry in listed if entry.strip()]
    alerts = raw.get("alerts")
    if isinstance(alerts, dict) and isinstance(alerts.get("allowed_recipients"), str):
        # FEDGATE_ALERTS_ALLOWED_RECIPIENTS: a comma-separated list
        listed = alerts["allowed_recipients"].split(",")
        alerts["allowed_recipients"] = [entry.strip() for entry in listed if entry.strip()]
    raw["admin_token"] = env.get("FEDGATE_ADMIN_TOKEN", "")
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {_locate_store_error(raw) or _describe_validation_error(exc)}") from exc
    validate_settings(settings)
    return settings


def _describe_validation_error(exc: msgspec.ValidationError) -> str:
    """Turn msgspec's `... - at `$.stores['x'].url`` into `stores.x.url: ...`."""
    text = str(exc)
    message, path = text, ""
    match = re.search(r" - at `\$(.*)`$", text)
    if match:
        message = text[: match.start()]
        path = re.sub(r"\['([^']*)'\]", r".\1", match.group(1)).lstrip(".")
    unknown = re.search(r"unknown field `([^`]+)`", message)
    if unknown:
        path = f"{path}.{unknown.group(1)}".lstrip(".")
    return f"{path}: {message}" if path else message


def _locate_store_error(raw: dict[str, Any]) -> str | None:
    """msgspec does not name dict keys in its error path; find the store at fault by checking each."""
    stores = raw.get("stores")
    if not isinstance(stores, dict):
        return None
    for name, store in stores.items():
        try:
            msgspec.convert(store, StoreSettings, strict=False)
        except msgspec.ValidationError as exc:
            return f"stores.{name}.{_describe_validation_error(exc)}"
    return None


def _referenced_env_names(raw: dict[str, Any]) -> set[str]:
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and key.endswith("_env"):
                    names.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(raw)
    return names


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    referenced = _referenced_env_names(raw)
    for var in sorted(env):
        if not var.startswith("FEDGATE_") or var in SPECIAL_ENV or var in referenced:
            continue
        rest = var[len("FEDGATE_") :].lower()
        if "__" in rest:
            parts = rest.split("__")
        else:
            section, _, key = rest.partition("_")
            if section not in _SIMPLE_SECTIONS or not key:
                raise ConfigError(
                    f"unknown setting {var}: use FEDGATE_<SECTION>_<KEY> for "
                    f"{', '.join(_SIMPLE_SECTIONS)} or FEDGATE_<SECTION>__<NAME>__<KEY> for nested keys"
                )
            parts = [section, key]
        _set_path(raw, parts, env[var], var)


def _set_path(raw: dict[str, Any], parts: list[str], value: str, var: str) -> None:
    node: Any = raw
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{var}: no list item {part!r}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{var}: {'.'.join(parts[:index])} is not a table")
        key = _match_key(node, part)
        if last:
            node[key] = value
        else:
            node = node.setdefault(key, {})


def _match_key(node: dict[str, Any], part: str) -> str:
    """Env names cannot carry '-' or case; match them against the keys already present."""
    wanted = part.replace("-", "_").lower()
    for key in node:
        if key.replace("-", "_").lower() == wanted:
            return key
    return part


def check_life_cycle(settings: Settings) -> None:
    """Shutdown, overload and start-up settings: each a number in its range."""
    server, database = settings.server, settings.database
    for key in ("shutdown_delay_seconds", "shutdown_grace_seconds"):
        if not 0 <= getattr(server, key) <= 3600:
            raise ConfigError(f"server.{key}: must be between 0 and 3600")
    for key in ("max_in_flight", "max_queued"):
        if getattr(server, key) < 0:
            raise ConfigError(f"server.{key}: may not be negative (0 turns the cap off)")
    if server.queue_wait_seconds <= 0:
        raise ConfigError("server.queue_wait_seconds: must be more than 0")
    if not 0.1 <= server.store_check_interval_seconds <= 3600:
        raise ConfigError("server.store_check_interval_seconds: must be between 0.1 and 3600")
    if server.principal_requests_per_second < 0:
        raise ConfigError("server.principal_requests_per_second: may not be negative (0 turns the limit off)")
    if server.principal_requests_per_second > 0 and server.principal_burst < 1:
        raise ConfigError("server.principal_burst: must be at least 1 while the limit is on")
    if database.connect_timeout_seconds <= 0:
        raise ConfigError("database.connect_timeout_seconds: must be more than 0")
    if not 0 < database.timeout_seconds <= 600:
        raise ConfigError("database.timeout_seconds: must be more than 0 and at most 600")
    for key in ("request_head_seconds", "request_body_seconds"):
        if not 0 < getattr(server, key) <= 3600:
            raise ConfigError(f"server.{key}: must be more than 0 and at most 3600")
    if not 8 * 1024 <= server.max_request_head_bytes <= 16 * 1024 * 1024:
        raise ConfigError("server.max_request_head_bytes: must be between 8192 and 16777216")
    if server.request_body_min_bytes_per_second < 1:
        raise ConfigError("server.request_body_min_bytes_per_second: must be at least 1")
    for key in ("link_poll_seconds", "webhook_poll_seconds", "webhook_retry_seconds", "webhook_timeout_seconds"):
        if not 0 < getattr(server, key) <= 3600:
            raise ConfigError(f"server.{key}: must be more than 0 and at most 3600")
    if not 1 <= server.webhook_max_attempts <= 100:
        raise ConfigError("server.webhook_max_attempts: must be between 1 and 100")
    if server.webhook_history_days < 1:
        raise ConfigError("server.webhook_history_days: must be at least 1")
    if server.outbox_history_days < 1:
        raise ConfigError("server.outbox_history_days: must be at least 1")


def validate_settings(settings: Settings) -> None:
    """Cross-field checks msgspec cannot express; each message names the key at fault."""
    if not settings.account.id.isdigit():
        raise ConfigError(f"account.id: must be numeric, got {settings.account.id!r}")
    if not 0 < settings.server.port < 65536:
        raise ConfigError(f"server.port: {settings.server.port} is not a TCP port")
    if settings.server.workers < 1:
        raise ConfigError("server.workers: must be at least 1")
    if settings.server.sql_statement_timeout_seconds <= 0:
        raise ConfigError("server.sql_statement_timeout_seconds: must be more than 0")
    if settings.server.account_search_timeout_seconds <= 0:
        raise ConfigError("server.account_search_timeout_seconds: must be more than 0")
    if settings.server.sql_row_cap < 1:
        raise ConfigError("server.sql_row_cap: must be at least 1")
    if settings.server.sql_work_mem_mb < 1:
        raise ConfigError("server.sql_work_mem_mb: must be at least 1")
    if settings.server.sql_temp_file_limit_mb < 0:
        raise ConfigError("server.sql_temp_file_limit_mb: may not be negative (0 turns the limit off)")
    if settings.server.sql_results_mb_per_principal < 0:
        raise ConfigError("server.sql_results_mb_per_principal: may not be negative (0 turns the bound off)")
    if settings.server.sql_max_statements_per_principal < 0:
        raise ConfigError("server.sql_max_statements_per_principal: may not be negative (0 turns the cap off)")
    if settings.server.anonymous_denials_per_second < 0:
        raise ConfigError("server.anonymous_denials_per_second: may not be negative (0 turns the limit off)")
    if settings.server.anonymous_denials_per_second > 0 and settings.server.anonymous_denials_burst < 1:
        raise ConfigError("server.anonymous_denials_burst: must be at least 1 while the limit is on")
    check_life_cycle(settings)
    for name, store in settings.stores.items():
        if not STORE_NAME_RE.match(name):
            raise ConfigError(f"stores.{name}: store names use letters, digits, '-', '_' and '.'")
        if not store.url.startswith(("http://", "https://")):
            raise ConfigError(f"stores.{name}.url: must be an http(s) URL, got {store.url!r}")
        auth = store.auth
        if isinstance(auth, BasicAuth) and not (auth.password_env or auth.password_file):
            raise ConfigError(f"stores.{name}.auth: basic auth needs password_env or password_file")
        if isinstance(auth, BearerAuth) and not (auth.token_env or auth.token_file):
            raise ConfigError(f"stores.{name}.auth: bearer auth needs token_env or token_file")
        if isinstance(auth, OAuth2ClientCredentials):
            if not (auth.client_secret_env or auth.client_secret_file):
                raise ConfigError(f"stores.{name}.auth: needs client_secret_env or client_secret_file")
            if not auth.token_url and not auth.provider:
                raise ConfigError(f"stores.{name}.auth: needs token_url or provider")
            if auth.provider == "entra" and not auth.tenant_id and not auth.token_url:
                raise ConfigError(f"stores.{name}.auth.tenant_id: required for provider 'entra'")
    check_vaults(settings)
    check_secrets(settings.secrets)
    check_outbound(settings.outbound)
    check_alerts(settings.alerts, settings.smtp)
    if settings.central.store and settings.central.store not in settings.stores:
        raise ConfigError(f"central.store: no store named {settings.central.store!r}")
    names: set[str] = set()
    ids: set[str] = set()
    for index, ws in enumerate(settings.workspaces):
        where = f"workspaces[{index}]"
        check_workspace_name(ws.name, where=f"{where}.name")
        if ws.name in names:
            raise ConfigError(f"{where}.name: workspace {ws.name!r} is declared twice")
        if not ws.id.isdigit():
            raise ConfigError(f"{where}.id: workspace ids are numeric, got {ws.id!r}")
        if ws.id in ids:
            raise ConfigError(f"{where}.id: workspace id {ws.id} is used twice")
        names.add(ws.name)
        ids.add(ws.id)
        check_link(ws.mode, ws.store, settings, where=where)
        check_workspace_vault(ws.vault, settings, where=f"{where}.vault")
        check_default_secret_scope(ws.default_secret_scope, where=f"{where}.default_secret_scope")
    check_declared_namespaces(settings)
    check_oidc(settings.oidc)
    check_tokens(settings.tokens)
    check_ui(settings.ui)


def check_vaults(settings: Settings) -> None:
    """Each vault's address and credentials are complete; credentials come from the environment or files."""
    for name, vault in settings.vaults.items():
        where = f"vaults.{name}"
        if not STORE_NAME_RE.match(name):
            raise ConfigError(f"{where}: vault names use letters, digits, '-', '_' and '.'")
        if isinstance(vault, BuiltinVaultSettings):
            if name != BUILTIN_VAULT:
                raise ConfigError(f"{where}: the built-in vault is the one named {BUILTIN_VAULT!r}")
        elif isinstance(vault, OpenBaoVaultSettings):
            if not vault.address.startswith(("http://", "https://")):
                raise ConfigError(f"{where}.address: must be an http(s) URL, got {vault.address!r}")
            auth = vault.auth
            if isinstance(auth, VaultToken) and not (auth.token_env or auth.token_file):
                raise ConfigError(f"{where}.auth: token auth needs token_env or token_file")
            if isinstance(auth, VaultAppRole) and not (auth.secret_id_env or auth.secret_id_file):
                raise ConfigError(f"{where}.auth: approle auth needs secret_id_env or secret_id_file")
        else:
            for key, url in (("vault_url", vault.vault_url), ("authority_host", vault.authority_host)):
                if not _https_or_loopback(url):
                    raise ConfigError(f"{where}.{key}: must be an https URL (http only on loopback), got {url!r}")
            if not (vault.client_secret_env or vault.client_secret_file):
                raise ConfigError(f"{where}: needs client_secret_env or client_secret_file")
        if name == BUILTIN_VAULT and not isinstance(vault, BuiltinVaultSettings):
            raise ConfigError(f"{where}: the name {BUILTIN_VAULT!r} is the built-in vault's")


def check_secrets(secrets: SecretsSettings) -> None:
    if not 0 <= secrets.cache_seconds <= MAX_SECRET_CACHE_SECONDS:
        raise ConfigError(
            f"secrets.cache_seconds: must be between 0 (no cache) and {MAX_SECRET_CACHE_SECONDS:g}, "
            f"got {secrets.cache_seconds:g}"
        )
    if not 0 <= secrets.run_check_seconds <= MAX_RUN_CHECK_SECONDS:
        raise ConfigError(
            f"secrets.run_check_seconds: must be between 0 (ask the store on every read) and "
            f"{MAX_RUN_CHECK_SECONDS:g}, got {secrets.run_check_seconds:g}"
        )
    if not 1 <= secrets.leak_refusals <= 100:
        raise ConfigError(f"secrets.leak_refusals: must be between 1 and 100, got {secrets.leak_refusals}")
    if not 1 <= secrets.leak_text_bytes <= 1024 * 1024 * 1024:
        raise ConfigError(f"secrets.leak_text_bytes: must be between 1 and 1073741824, got {secrets.leak_text_bytes}")
    if not 1 <= secrets.leak_window_seconds <= MAX_LEAK_WINDOW_SECONDS:
        raise ConfigError(
            f"secrets.leak_window_seconds: must be between 1 and {MAX_LEAK_WINDOW_SECONDS:g}, "
            f"got {secrets.leak_window_seconds:g}"
        )
    if secrets.cache_max_entries < 1:
        raise ConfigError("secrets.cache_max_entries: must be at least 1")
    if secrets.cache_max_bytes < 1024:
        raise ConfigError("secrets.cache_max_bytes: must be at least 1024")


def check_outbound(outbound: OutboundSettings) -> None:
    for index, entry in enumerate(outbound.allowed_destinations):
        try:
            parse_allowed(entry)
        except DestinationError as exc:
            raise ConfigError(f"outbound.allowed_destinations[{index}]: {entry!r}: {exc}") from None


def check_alerts(alerts: AlertsSettings, smtp: SmtpSettings) -> None:
    for key in ("poll_seconds", "retry_seconds", "timeout_seconds"):
        if not 0 < getattr(alerts, key) <= 3600:
            raise ConfigError(f"alerts.{key}: must be more than 0 and at most 3600")
    if not 1 <= alerts.min_interval_seconds <= 86400:
        raise ConfigError("alerts.min_interval_seconds: must be between 1 and 86400")
    if not 1 <= alerts.concurrency <= 64:
        raise ConfigError("alerts.concurrency: must be between 1 and 64")
    if not 1 <= alerts.max_attempts <= 100:
        raise ConfigError("alerts.max_attempts: must be between 1 and 100")
    if alerts.history_days < 1:
        raise ConfigError("alerts.history_days: must be at least 1")
    for index, entry in enumerate(alerts.allowed_recipients):
        if not ALLOWED_RECIPIENT_RE.match(entry.strip()):
            raise ConfigError(
                f"alerts.allowed_recipients[{index}]: {entry!r} is neither an e-mail address "
                "(oncall@example.com) nor a domain (@example.com)"
            )
    if not smtp.host:
        return
    if not 0 < smtp.port < 65536:
        raise ConfigError(f"smtp.port: {smtp.port} is not a TCP port")
    if "@" not in smtp.from_address:
        raise ConfigError("smtp.from_address: an e-mail address is required when smtp.host is set")
    if smtp.starttls and smtp.tls:
        raise ConfigError("smtp: set starttls or tls, not both")
    if smtp.password_env and smtp.password_file:
        raise ConfigError("smtp: set password_env or password_file, not both")
    if smtp.username and not (smtp.password_env or smtp.password_file):
        raise ConfigError("smtp.username: needs password_env or password_file (never a password in this file)")


def _https_or_loopback(url: str) -> bool:
    """Bearer tokens travel to this URL: https, or plain http to this machine only."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"))


def check_tokens(tokens: TokenSettings) -> None:
    if tokens.max_lifetime_seconds < 1:
        raise ConfigError("tokens.max_lifetime_seconds: must be at least 1 (tokens always expire)")
    if not 1 <= tokens.default_lifetime_seconds <= tokens.max_lifetime_seconds:
        raise ConfigError(
            f"tokens.default_lifetime_seconds: must be between 1 and tokens.max_lifetime_seconds "
            f"({tokens.max_lifetime_seconds}), got {tokens.default_lifetime_seconds}"
        )


def check_oidc(oidc: OidcSettings) -> None:
    """An issuer needs an audience and https (plain http only on loopback, for tests and development); browser
    sign-in's client is not that audience."""
    if not oidc.algorithms or not set(oidc.algorithms) <= set(OIDC_ALGORITHMS):
        allowed = ", ".join(OIDC_ALGORITHMS)
        raise ConfigError(f"oidc.algorithms: use a non-empty subset of {allowed}, got {oidc.algorithms}")
    if min(oidc.leeway_seconds, oidc.jwks_cache_seconds, oidc.jwks_min_refetch_seconds) < 0:
        raise ConfigError("oidc: leeway_seconds, jwks_cache_seconds and jwks_min_refetch_seconds may not be negative")
    if oidc.leeway_seconds > MAX_OIDC_LEEWAY_SECONDS:
        raise ConfigError(f"oidc.leeway_seconds: at most {MAX_OIDC_LEEWAY_SECONDS}, got {oidc.leeway_seconds}")
    if oidc.client_id and not oidc.enabled:
        raise ConfigError("oidc.client_id: browser sign-in with a provider needs oidc.issuer")
    if oidc.client_secret_env and oidc.client_secret_file:
        raise ConfigError("oidc: set client_secret_env or client_secret_file, not both")
    if not oidc.enabled:
        return
    if not oidc.audience:
        raise ConfigError("oidc.audience: required when oidc.issuer is set")
    if oidc.client_id == oidc.audience:
        # The provider's ID tokens are addressed to the client: with one audience for both, an ID token would
        # pass the audience check of an access token, and only claims a provider need not send (`typ`, `nonce`,
        # `at_hash`) would still tell it apart (docs/security.md, invariant 5).
        raise ConfigError(
            "oidc.client_id: may not be oidc.audience: ID tokens for browser sign-in are addressed to the client, "
            "and with one audience they would also be addressed to this API; register a client for browser "
            "sign-in apart from the API's audience"
        )
    url = urlsplit(oidc.issuer)
    secure = url.scheme == "https" and bool(url.hostname)
    loopback = url.scheme == "http" and url.hostname in LOOPBACK_HOSTS
    if not (secure or loopback) or url.query or url.fragment:
        raise ConfigError(
            f"oidc.issuer: must be an https URL (http only on 127.0.0.1 or localhost), got {oidc.issuer!r}"
        )


def check_ui(ui: UiSettings) -> None:
    if ui.public_url:
        url = urlsplit(ui.public_url)
        if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/") or url.query:
            raise ConfigError(
                f"ui.public_url: must be the gateway's origin, like https://mlflow.example.com, got {ui.public_url!r}"
            )
    if ui.session_idle_seconds < 60 or ui.session_max_seconds < ui.session_idle_seconds:
        raise ConfigError("ui.session_idle_seconds must be at least 60 and ui.session_max_seconds at least as long")


def check_workspace_name(name: str, *, where: str) -> None:
    if not 2 <= len(name) <= 63 or not WORKSPACE_NAME_RE.match(name):
        raise ConfigError(
            f"{where}: {name!r} is not a valid workspace name "
            "(2-63 lowercase letters, digits and '-', starting and ending with a letter or digit)"
        )
    if name in RESERVED_WORKSPACE_NAMES:
        raise ConfigError(f"{where}: the name {name!r} is reserved")


def check_workspace_vault(vault: str, settings: Settings, *, where: str) -> None:
    """A workspace's vault is one declared under [vaults], or the built-in one ("" or `builtin`)."""
    if vault and vault != BUILTIN_VAULT and vault not in settings.vaults:
        known = ", ".join(sorted({BUILTIN_VAULT, *settings.vaults}))
        raise ConfigError(f"{where}: no vault named {vault[:70]!r} (see [vaults]; configured: {known})")


def check_default_secret_scope(scope: str, *, where: str) -> None:
    """A workspace's default secret scope is a scope name, or "" for none."""
    if scope and not SECRET_NAME_RE.match(scope):
        raise ConfigError(f"{where}: {scope[:140]!r} is not a valid scope name ({SECRET_NAME_RULE})")


def check_link(mode: str, store: str, settings: Settings, *, where: str) -> None:
    if mode == "dual":
        if not settings.central.store:
            raise ConfigError(f"{where}.mode: 'dual' needs central.store to name the account's store")
        if store == settings.central.store:
            raise ConfigError(f"{where}.store: a dual workspace needs a store of its own besides the central one")
    if mode == "central":
        if not settings.central.store:
            raise ConfigError(f"{where}.mode: 'central' needs central.store to name the account's store")
        if not settings.stores[settings.central.store].workspaces:
            # The whole store would be the workspace's: every other central workspace, and the dual
            # workspaces' copies kept there, would share it.
            raise ConfigError(
                f"{where}.mode: 'central' needs a central store with workspaces (set workspaces = true on "
                f"stores.{settings.central.store} and start it with --enable-workspaces), so that each central "
                "workspace gets a namespace of its own; or link the workspace to a store of its own"
            )
        return
    if not store:
        raise ConfigError(f"{where}.store: mode {mode!r} needs a store")
    if store not in settings.stores:
        raise ConfigError(f"{where}.store: no store named {store!r}")


def link_namespaces(
    name: str, mode: str, store: str | None, upstream_workspace: str | None, settings: Settings
) -> tuple[Namespace, ...]:
    """Every store namespace a workspace linked this way reads or writes (gateway/core/links.py)."""
    spaces: list[Namespace] = []
    home = settings.central.store if mode == "central" else store or ""
    if home in settings.stores:
        own = settings.stores[home]
        upstream = (upstream_workspace or name) if own.workspaces else None
        spaces.append(Namespace(store_identity(own.url), upstream, label=home))
    central = settings.central.store
    if mode == "dual" and central in settings.stores:
        mirror = settings.stores[central]
        if mirror.workspaces:
            spaces.append(Namespace(store_identity(mirror.url), name, label=central))
        else:
            spaces.append(Namespace(store_identity(mirror.url), None, prefix=f"{name}/", label=central))
    return tuple(spaces)


def check_declared_namespaces(settings: Settings) -> None:
    """No two declared workspaces may read or write one store namespace: the store could not keep them apart."""
    seen: list[tuple[str, tuple[Namespace, ...]]] = []
    for index, ws in enumerate(settings.workspaces):
        spaces = link_namespaces(ws.name, ws.mode, ws.store, ws.upstream_workspace, settings)
        for position, mine in enumerate(spaces):
            if any(mine.overlaps(other) for other in spaces[position + 1 :]):
                raise ConfigError(
                    f"workspaces[{index}].store: workspace {ws.name!r} would keep its own data and its central "
                    f"copies in one namespace ({mine.describe()})"
                )
        for other_name, other_spaces in seen:
            for mine in spaces:
                if any(mine.overlaps(theirs) for theirs in other_spaces):
                    raise ConfigError(
                        f"workspaces[{index}]: workspaces {other_name!r} and {ws.name!r} share one store namespace "
                        f"({mine.describe()}); give each its own store, or its own upstream_workspace on a store "
                        "with workspaces = true"
                    )
        seen.append((ws.name, spaces))
