"""The composition root: settings in, a Litestar app out, with concrete adapters chosen here only."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
from litestar import Litestar, Request, Response, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import (
    HTTPException,
    InternalServerException,
    MethodNotAllowedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.postgres_notify import PostgresNotifications
from adapters.stores.auth import (
    DEFAULT_SCOPES,
    ClientCredentialsAuth,
    NoStoreAuth,
    StaticStoreAuth,
    StoreAuth,
    token_url_for,
)
from adapters.stores.mlflow_rest import MlflowRestStore
from adapters.vaults.azure_keyvault import AzureKeyVault, KeyVaultSettings
from adapters.vaults.openbao import AppRoleAuth, KubernetesAuth, OpenBaoAuth, OpenBaoSettings, OpenBaoVault, TokenAuth
from gateway.alerts import SqlAlertsController, build_alerts
from gateway.audit.pages import AuditPageTokens
from gateway.audit.trail import AuditTrail, entry
from gateway.authn.browser import BrowserOrigin
from gateway.authn.limits import Admission, PrincipalLimiter
from gateway.authn.middleware import AuthenticationMiddleware, DenialLimiter
from gateway.authn.oidc import OidcVerifier
from gateway.authn.service import Authenticator
from gateway.authn.sessions import BrowserSessions
from gateway.authn.sign_in import ProviderSignIn
from gateway.authz.decide import Authorizer
from gateway.authz.live import LivePolicy
from gateway.authz.moves import AuthzMoves
from gateway.authz.policy import PolicySnapshot
from gateway.authz.repository import POLICY_CHANNEL
from gateway.authz.routes import AuditController, PermissionsController, UnityCatalogController
from gateway.authz.service import AccessService
from gateway.console.access.routes import AccessConsoleController, console_guard
from gateway.console.access.service import AccessConsole
from gateway.console.assets import ConsoleAssets
from gateway.console.features import FEATURES as CONSOLE_FEATURES
from gateway.console.queries.routes import QueriesController, QueryPermissionsController
from gateway.console.queries.service import SavedQueries
from gateway.console.shell import Console, console_router
from gateway.core.background import BackgroundLoop
from gateway.core.config import (
    BUILTIN_VAULT,
    AzureKeyVaultSettings,
    BasicAuth,
    BearerAuth,
    ConfigError,
    OAuth2ClientCredentials,
    OpenBaoVaultSettings,
    Settings,
    StoreSettings,
    VaultAppRole,
    VaultKubernetes,
    VaultToken,
    builtin_vault_configured,
    load_settings,
)
from gateway.core.destinations import AllowList
from gateway.core.errors import (
    BODY_DECODE_ERRORS,
    DatabaseUnavailable,
    GatewayError,
    InvalidParameter,
    PermissionDenied,
    Unauthenticated,
    body_error,
    error_bytes,
    mlflow_error,
)
from gateway.core.links import LinkTable
from gateway.core.ports import ChangeFeed, Store, Vault
from gateway.core.principal import Principal
from gateway.core.route_table import (
    MODEL_VERSIONS_CREATE,
    MODEL_VERSIONS_DELETE_TAG,
    MODEL_VERSIONS_SET_TAG,
    MODEL_VERSIONS_TRANSITION_STAGE,
    REGISTERED_MODELS_DELETE_ALIAS,
    REGISTERED_MODELS_SET_ALIAS,
)
from gateway.core.sealing import Keyring
from gateway.core.watch import ReloadLoop
from gateway.core.workspace_headers import ID_HEADER, NAME_HEADER
from gateway.db.engine import make_sessionmaker
from gateway.db.errors import data_refused, database_unreachable
from gateway.db.locks import autocommit_connection
from gateway.db.migrate import database_revision
from gateway.db.pools import DatabasePools, PoolName
from gateway.delivery import Pacing
from gateway.delivery.secrets import SubscriberSecrets
from gateway.dual.capture import OutboxCapture
from gateway.dual.failover import Failover, FailoverSender
from gateway.dual.mirror import Mirror
from gateway.dual.moves import DualMoves
from gateway.dual.outbox import OutboxRepository, Relay
from gateway.dual.reconcile import Reconciler
from gateway.dual.recovery import DualRecovery
from gateway.federation.bookkeeping import DERIVED_SETTINGS, Bookkeeping, RunRoutes
from gateway.federation.call import ACCOUNT_SCOPE
from gateway.federation.direct import DirectCalls
from gateway.federation.guard import Guard
from gateway.federation.hooks import AfterWrite, Recovery
from gateway.federation.intents import IntentLog, Presence
from gateway.federation.jobs import JobBook
from gateway.federation.locate import Locator, RunDirectory
from gateway.federation.moves import JobMoves
from gateway.federation.routes import forwarding_handlers, server_info_handler
from gateway.federation.service import Forwarder, StoreSender
from gateway.index.account import AccountScope
from gateway.index.account_models import AccountModels
from gateway.index.moves import IndexMoves
from gateway.index.routes import IndexController, RunMetricsController
from gateway.index.run_metrics import RunMetrics
from gateway.index.sync import IndexSync
from gateway.index.write_through import IndexRecovery, IndexWriteThrough, StartedRunIndex
from gateway.index.writer import IndexWriter
from gateway.observability.access import REQUEST_ID_KEY, AccessLog
from gateway.observability.health import STORE_TIMEOUT_SECONDS, Readiness, StoreHealth, drain_on_sigterm
from gateway.observability.metrics import DENIED, INDEX_LAG, OUTBOX_OLDEST, OUTBOX_PENDING
from gateway.observability.routes import health_handlers
from gateway.outbound import DestinationCheck
from gateway.principals import names
from gateway.principals.guards import CATCH_UP
from gateway.principals.routes import (
    ScimController,
    ScimMeController,
    TokenController,
    TokenManagementController,
    audit_undecoded_body,
)
from gateway.principals.service import PrincipalService, TokenService
from gateway.properties.guard import PropertyGuard, property_slots
from gateway.registry.aliases import AliasApprovals
from gateway.registry.moves import RegistryMoves
from gateway.registry.promotion import Promotions
from gateway.registry.promotion_requests import PromotionRequests
from gateway.registry.routes import (
    ActivitiesController,
    AliasRequestsController,
    CommentsController,
    DatabricksRegistryController,
    MlflowAlias,
    MlflowTransitionStage,
    PromotionRequestsController,
    PromotionsController,
    RegistrySettingsController,
    RegistryWebhooksController,
    ReservedVersionTag,
    TransitionRequestsController,
)
from gateway.registry.service import RegistryWorkflow
from gateway.registry.sources import SOURCES_CHANNEL, ProtectedSources
from gateway.registry.store import RegistryStore
from gateway.registry.webhooks import WEBHOOKS_CHANNEL, RegistryWebhooks, deliverer
from gateway.secrets.builtin import BuiltinVault
from gateway.secrets.cache import CachedVault
from gateway.secrets.leaks import LeakGuard
from gateway.secrets.moves import SecretMoves
from gateway.secrets.probes import ProbeLedger, ProbeLimits
from gateway.secrets.repository import SECRET_READS_CHANNEL
from gateway.secrets.routes import SecretsController
from gateway.secrets.runstate import RunChecks, RunStateChanges
from gateway.secrets.service import SecretScopes
from gateway.secrets.taint import TaintedRuns
from gateway.sql.repository import ViewRepository
from gateway.sql.routes import SqlStatementsController
from gateway.sql.runner import QueryRunner, StatementLimits
from gateway.sql.service import SqlService
from gateway.stores.capabilities import StoreCapabilities
from gateway.stores.client import StoreClient
from gateway.ui.routes import WebUi, ui_handlers
from gateway.ui.sessions_api import session_handlers
from gateway.ui.static import UiBuild, find_build
from gateway.workspaces.repository import CHANGE_CHANNEL
from gateway.workspaces.routes import LinksController, WorkspacesController
from gateway.workspaces.service import WorkspaceService
from gateway.workspaces.watch import link_watcher

log = logging.getLogger(__name__)
# What Litestar raises while a handler reads the body of a request whose client went away.
CLIENT_GONE = "client disconnected prematurely"
# One LISTEN connection each: the watchers of links and policy, the runs that read secrets, the registry
# webhooks' deliveries and where protected model versions' files lie (below).
LISTEN_CHANNELS = (CHANGE_CHANNEL, POLICY_CHANNEL, SECRET_READS_CHANNEL, WEBHOOKS_CHANNEL, SOURCES_CHANNEL)
# Connections held for a worker's whole life besides the pools: one per LISTEN channel, and its presence lock
# (federation/intents.py).
HELD_CONNECTIONS = len(LISTEN_CHANNELS) + 1


def _secret(env_name: str, file_name: str, *, what: str) -> str:
    if env_name:
        value = os.environ.get(env_name, "")
        if not value:
            raise ConfigError(f"{what}: environment variable {env_name} is not set")
        return value
    try:
        return Path(file_name).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {file_name}: {exc.strerror}") from exc


def store_auth(name: str, store: StoreSettings) -> StoreAuth:
    auth = store.auth
    where = f"stores.{name}.auth"
    if isinstance(auth, BasicAuth):
        return StaticStoreAuth.basic(auth.username, _secret(auth.password_env, auth.password_file, what=where))
    if isinstance(auth, BearerAuth):
        return StaticStoreAuth.bearer(_secret(auth.token_env, auth.token_file, what=where))
    if isinstance(auth, OAuth2ClientCredentials):
        token_url = auth.token_url or token_url_for(auth.provider, host=store.url, tenant_id=auth.tenant_id)
        scope = auth.scope or DEFAULT_SCOPES.get(auth.provider, "")
        secret = _secret(auth.client_secret_env, auth.client_secret_file, what=where)
        return ClientCredentialsAuth(token_url, auth.client_id, secret, scope)
    return NoStoreAuth()


def build_stores(settings: Settings) -> dict[str, Store]:
    return {
        name: MlflowRestStore(
            name,
            store.url,
            auth=store_auth(name, store),
            workspaces_enabled=store.workspaces,
            timeout_seconds=store.timeout_seconds,
            connect_timeout_seconds=store.connect_timeout_seconds,
            max_connections=store.max_connections,
        )
        for name, store in settings.stores.items()
    }


def build_vaults(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession] | None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Vault]:
    """Every configured vault, and the built-in one (named `builtin`) when its keys are set.

    Credentials are read here, from the environment or files the settings name; a missing one is a
    ConfigError naming the setting. Call inside an event loop (the HTTP adapters open their sessions).
    The built-in vault keeps its values in the gateway's database (`sessionmaker`). With `[secrets]
    cache_seconds` above 0, each vault is wrapped in a `CachedVault` (gateway/secrets/cache.py).
    """
    env = os.environ if environ is None else environ
    vaults: dict[str, Vault] = {}
    if builtin_vault_configured(settings.vaults, env):
        if sessionmaker is None:
            raise ConfigError("the built-in vault needs the gateway's database")
        vaults[BUILTIN_VAULT] = BuiltinVault(sessionmaker, Keyring.from_environment(env), BUILTIN_VAULT)
    for name, vault in settings.vaults.items():
        where = f"vaults.{name}"
        if isinstance(vault, OpenBaoVaultSettings):
            vaults[name] = OpenBaoVault(
                name,
                OpenBaoSettings(
                    address=vault.address,
                    auth=_openbao_auth(vault.auth, where=f"{where}.auth"),
                    mount=vault.mount,
                    prefix=vault.prefix,
                    namespace=vault.namespace or None,
                    timeout_seconds=vault.timeout_seconds,
                ),
            )
        elif isinstance(vault, AzureKeyVaultSettings):
            vaults[name] = AzureKeyVault(
                name,
                KeyVaultSettings(
                    vault_url=vault.vault_url,
                    tenant_id=vault.tenant_id,
                    client_id=vault.client_id,
                    client_secret=_secret(vault.client_secret_env, vault.client_secret_file, what=where),
                    authority_host=vault.authority_host,
                    timeout_seconds=vault.timeout_seconds,
                ),
            )
    cache = settings.secrets
    if cache.cache_seconds > 0:  # off by default: nothing is kept beyond one request
        return {
            name: CachedVault(
                vault, cache.cache_seconds, max_entries=cache.cache_max_entries, max_bytes=cache.cache_max_bytes
            )
            for name, vault in vaults.items()
        }
    return vaults


def _openbao_auth(auth: VaultToken | VaultAppRole | VaultKubernetes, *, where: str) -> OpenBaoAuth:
    if isinstance(auth, VaultToken):
        return TokenAuth(_secret(auth.token_env, auth.token_file, what=where))
    if isinstance(auth, VaultAppRole):
        return AppRoleAuth(auth.role_id, _secret(auth.secret_id_env, auth.secret_id_file, what=where), auth.mount)
    return KubernetesAuth(auth.role, auth.jwt_file, auth.mount)


def _error_body(error_code: str, message: str) -> bytes:
    """An error body as an MLflow server writes it (JSON of its shape, fields and spacing)."""
    return error_bytes(mlflow_error(error_code, message))


def _gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    return Response(error_bytes(exc.document()), status_code=exc.status, headers=exc.headers)


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, NotFoundException | MethodNotAllowedException):
        method = request.scope.get("method", "")
        return Response(
            _error_body("ENDPOINT_NOT_FOUND", f"No API endpoint {method} {request.url.path}"), status_code=404
        )
    if exc.status_code == 413:
        return Response(
            _error_body("INVALID_PARAMETER_VALUE", "The request body is larger than the gateway accepts."),
            status_code=413,
        )
    if isinstance(exc, InternalServerException) and exc.detail == CLIENT_GONE:
        # The client went away (or was cut off for sending too slowly, gateway/cli/http.py) before its body came
        # whole: nobody reads this answer, and it is not the gateway's failure.
        log.info("client went away", extra={"request_id": request.scope.get(REQUEST_ID_KEY, "")})
        return Response(
            _error_body("BAD_REQUEST", "The client went away before its request body came whole."), status_code=400
        )
    if isinstance(exc, ValidationException):
        if isinstance(exc.__cause__, msgspec.ValidationError):  # a body that does not fit its Struct
            return _gateway_error(request, body_error(_body_path(exc.__cause__)) or InvalidParameter(str(exc.detail)))
        detail = "; ".join(str(e.get("message", "")) for e in (exc.extra or []) if isinstance(e, dict))
        return Response(
            _error_body("INVALID_PARAMETER_VALUE", f"Invalid request: {detail or exc.detail}"), status_code=400
        )
    if isinstance(exc.__cause__, SerializationException):  # Litestar could not decode the body
        detail = str(exc.detail)[:200]
        return Response(
            _error_body("INVALID_PARAMETER_VALUE", f"Malformed JSON in the request body: {detail}"), status_code=400
        )
    if 400 <= exc.status_code < 500:
        return Response(_error_body("BAD_REQUEST", str(exc.detail)), status_code=exc.status_code)
    return _unexpected(request, exc)


def _error_code(response: Response[Any]) -> str:
    """The error code of an answer in MLflow's error shape made here ("" for any other)."""
    try:
        document = msgspec.json.decode(response.content) if isinstance(response.content, bytes) else None
    except msgspec.DecodeError:
        return ""
    code = document.get("error_code") if isinstance(document, dict) else None
    return code if isinstance(code, str) else ""


def _body_path(exc: msgspec.ValidationError) -> msgspec.ValidationError:
    """msgspec's message with the path from the body's root (`$.changes[0].add`), not from the handler's
    `data` argument (`$.data.changes[0].add`), so the message names the field as the caller wrote it."""
    text = str(exc).replace("`$.data.", "`$.").replace("`$.data`", "`$`")
    return msgspec.ValidationError(text)


def _malformed_body(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A body that cannot be decoded (bad JSON, bad UTF-8, nested past the decoder's recursion limit) is
    the caller's error: 400, nothing logged. Only a request that carries a body can be blamed for one."""
    error = body_error(exc)
    carries_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    if error is None or not carries_body:
        return _unexpected(request, exc)
    return _gateway_error(request, error)


def _database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The gateway's database could not be reached: 503 TEMPORARILY_UNAVAILABLE with Retry-After, whichever route
    and whichever shape the driver or SQLAlchemy gave it (gateway/db/errors.py); any other error of the
    database or an OSError of something else is unexpected (500), except a value the database refuses as data (a NUL
    character, a number past bigint) that no check of the route's caught: the caller's, 400."""
    if data_refused(exc):
        log.warning(
            "the database refused a value of the request",
            extra={"request_id": request.scope.get(REQUEST_ID_KEY, ""), "error": type(exc).__name__},  # type: ignore[call-overload,unused-ignore]
        )
        return _gateway_error(
            request,
            InvalidParameter(
                "A value in the request cannot be stored or looked up: "
                "text with a NUL character or a number out of range."
            ),
        )
    if not database_unreachable(exc):
        return _unexpected(request, exc)
    log.warning(
        "the database could not be reached",
        extra={"request_id": request.scope.get(REQUEST_ID_KEY, ""), "error": type(exc).__name__},  # type: ignore[call-overload,unused-ignore]
    )
    return _gateway_error(request, DatabaseUnavailable())


# Raised when the database cannot be reached, among others: each is looked at (`database_unreachable`).
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """One log line (request id, route, exception type, the frames it came through) and a 500 without a trace.

    Neither the exception's message nor the request is logged: either may hold a body, a token or a
    query's parameters.
    """
    request_id = request.scope.get(REQUEST_ID_KEY, "")  # type: ignore[call-overload,unused-ignore]
    handler = request.scope.get("route_handler")
    frames = traceback.extract_tb(exc.__traceback__)[-6:]
    log.error(
        "unexpected error",
        extra={
            "request_id": request_id,
            "method": request.scope.get("method", ""),
            "route": handler.name if handler is not None and handler.name else "unmatched",
            "error": type(exc).__name__,
            "where": [f"{'/'.join(f.filename.split('/')[-2:])}:{f.lineno} {f.name}" for f in frames],
        },
    )
    return Response(
        _error_body("INTERNAL_ERROR", f"Internal error in the gateway (request id {request_id})."),
        status_code=500,
    )


def _version() -> str:
    try:
        return version("fedgate")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def openapi_config() -> OpenAPIConfig:
    """The gateway's own API (admin, permissions, workspaces, SQL) described at /schema/openapi.json.

    Deny by default as every other route: only an authenticated caller reads it. The forwarded MLflow
    routes are MLflow's (documented there) and the operations routes are not listed.
    """
    return OpenAPIConfig(
        title="fedgate",
        version=_version(),
        description="The gateway's own API; the MLflow routes it forwards are MLflow's.",
        render_plugins=[JsonRenderPlugin()],  # /schema/openapi.json; no UI pages (they load scripts from CDNs)
        openapi_router=Router("/schema", route_handlers=[], opt={"access": "any authenticated principal"}),
    )


def create_app(settings: Settings, database_url: str) -> Litestar:
    """Wire the gateway for `settings`, its bookkeeping in the PostgreSQL at `database_url`."""
    stores = build_stores(settings)
    links = LinkTable()
    # Every connection this worker opens, by name; the budget is logged at start-up (gateway/db/pools.py).
    pools = DatabasePools(
        database_url,
        settings.database.pool_size,
        listeners=HELD_CONNECTIONS,
        timeout_seconds=settings.database.timeout_seconds,
    )
    engine = pools.engine
    sessionmaker = make_sessionmaker(engine)
    # Access control: one live policy per process, kept in step with every replica.
    policy = LivePolicy(
        sessionmaker,
        views=lambda session: ViewRepository(session).names(),
        rebuild_seconds=settings.server.policy_rebuild_seconds,
    )
    # A workspace moved to another store or id, or unlinked: each package carries or drops its own rows
    # (db/moves.py), grants included; this replica's policy reloads before the admin hears the answer.
    # DualMoves first: renumbering the outbox waits for relays, before any row they may write is locked.
    workspaces = WorkspaceService(
        settings,
        stores,
        links,
        move_hooks=(DualMoves(), IndexMoves(), AuthzMoves(policy), SecretMoves(), RegistryMoves(), JobMoves()),
    )
    workspaces.settled = policy.reload
    direct = DirectCalls(stores)  # the gateway's own calls to stores (authorization reads, existence, undo)
    runs = RunDirectory(sessionmaker)
    locator = Locator(direct.fetch, runs)  # where runs, logged models and traces live
    capabilities = StoreCapabilities(stores)

    audit = AuditTrail(sessionmaker)
    authorizer = Authorizer(policy)
    oidc = OidcVerifier(settings.oidc) if settings.oidc.enabled else None
    # The web UI (the `ui` extra's MLflow build) and its browser sessions; without the build, neither.
    build = find_build() if settings.ui.enabled else None
    sessions = (
        BrowserSessions(
            sessionmaker,
            idle_seconds=settings.ui.session_idle_seconds,
            max_seconds=settings.ui.session_max_seconds,
            policy=policy,
            audit=audit,
        )
        if build is not None
        else None
    )
    browser = BrowserOrigin(settings.ui.public_url)
    authenticator = Authenticator(settings.admin_token, policy, sessionmaker, oidc, sessions)
    denial_limiter = DenialLimiter(
        settings.server.anonymous_denials_per_second, settings.server.anonymous_denials_burst
    )
    access = AccessService(sessionmaker, policy, authorizer, audit, direct.exists)
    principals = PrincipalService(sessionmaker, policy, audit)
    tokens = TokenService(sessionmaker, policy, audit, lambda: authenticator.token_key, settings.tokens)
    limits = StatementLimits(
        work_mem_kb=settings.server.sql_work_mem_mb * 1024,
        temp_file_limit_kb=settings.server.sql_temp_file_limit_mb * 1024,
    )
    sql = SqlService(settings, access, sessionmaker, QueryRunner(pools.lazy(PoolName.SQL), limits), audit)
    queries = SavedQueries(sessionmaker, policy, audit, sql)  # saved queries run through `sql` as their caller
    # Where secret scopes keep their values: each workspace's configured vault, else the built-in one.
    vaults = build_vaults(settings, sessionmaker)
    tainted = TaintedRuns(sessionmaker)  # the runs that read a secret: the leak guard checks their writes
    # A run's read is decided, audited and noted in one statement; a worker trusts its recent check that the run
    # is RUNNING while no call through the gateway changed the run's state (secrets/runstate.py).
    secrets_pool = pools.lazy(PoolName.SECRETS, reset=False)
    secrets = SecretScopes(
        sessionmaker,
        policy,
        authorizer,
        audit,
        vaults,  # each workspace's `vault` (its link) names the one its new scopes use
        runs,  # a run's read of a secret: where the run lives ...
        direct.fetch,  # ... and its status and experiment, from its store
        tainted,
        pool=secrets_pool.pool,
        checks=RunChecks(settings.secrets.run_check_seconds),
    )

    # The request pipeline (federation/service.py) and what plugs into it (federation/hooks.py).
    # Jobs of the stores' job runners the gateway started, and what starting each needed (federation/guard/jobs.py).
    # Where the files of model versions in Staging, Production or holding an alias lie (registry/sources.py): an
    # artifact write there asks what changing the version asks.
    stageless = {name for name, store in settings.stores.items() if not store.registry_stages}
    protected_sources = ProtectedSources(
        sessionmaker,
        direct.fetch,
        lambda link, name: access.model_id(link, name, adopt=True),
        locator.experiment_of,
        lambda link: link.store in stageless,
    )
    guard = Guard(authorizer, locator, access, direct.undo_create, JobBook(sessionmaker), protected_sources)
    mirror = Mirror(links, stores, sessionmaker)
    relay = Relay(
        sessionmaker,
        mirror.apply,
        mirror.reachable,
        workers=settings.server.relay_workers,
        max_refusals=settings.server.outbox_max_refusals,
        keep_days=settings.server.outbox_history_days,
    )
    bookkeeping = Bookkeeping(pools.opener("bookkeeping"))  # the pools "outbox" and "derived"
    after_write: list[AfterWrite] = [RunRoutes(bookkeeping, runs)]
    if settings.server.index_write_through:
        index_writer = IndexWriter()
        after_write.append(IndexWriteThrough(index_writer, bookkeeping, locator))
        workspaces.rehomed = index_writer.forget
    after_write.append(
        OutboxCapture(bookkeeping, flush_before_answer=settings.server.outbox_durable_commit, queued=relay.wake)
    )
    sender = FailoverSender(StoreSender(stores), Failover(stores, sessionmaker))
    # Before anything of a write is sent: a run that read a secret must not log its value, into the run or into its
    # traces, assessments and logged models (secrets/leaks.py, linked.py; their objects read with direct.fetch).
    leak_probes = ProbeLedger(
        sessionmaker,
        ProbeLimits(
            refusals=settings.secrets.leak_refusals,
            text_bytes=settings.secrets.leak_text_bytes,
            window_seconds=settings.secrets.leak_window_seconds,
        ),
    )
    leak_guard = LeakGuard(sessionmaker, tainted, vaults, secrets.permission, audit, leak_probes, direct.fetch)
    # A run's properties are add-only: no call may change or delete one (properties/guard.py).
    # It holds a connection of the engine per call until the store answers: at most property_slots of them at once.
    property_guard = PropertyGuard(direct.fetch, sessionmaker, audit, slots=property_slots(settings.database.pool_size))
    # Where a call makes the store send requests (webhooks, AI-gateway providers): the operator's allow-list.
    destinations = DestinationCheck(AllowList(settings.outbound.allowed_destinations), direct.fetch)
    reconciler = Reconciler(links, stores, mirror, sessionmaker, settings.server.reconcile_interval_seconds)
    index_pool = pools.lazy(PoolName.INDEX_SYNC)
    index_sync = IndexSync(links, stores, index_pool, settings.server.index_sync_interval_seconds)
    if settings.server.index_write_through:
        after_write.append(StartedRunIndex(index_sync))  # runs the store creates for the prompt lab and jobs
    # Writes a crash must not lose are noted before they are sent, and recovered within seconds when their
    # outcome is unknown (federation/intents.py): dual workspaces' mirrored writes, and indexed writes.
    recoveries: list[Recovery] = [DualRecovery(reconciler, mirror, stores, sessionmaker)]
    if settings.server.index_write_through:
        recoveries.append(IndexRecovery(index_sync))
    intents = IntentLog(lambda: bookkeeping.pool("derived", DERIVED_SETTINGS), Presence(pools.dsn), links, recoveries)
    forwarder = Forwarder(
        links,
        runs,
        guard,
        sender,
        after_write,
        # Last: a call that may end runs outdates every worker's check of them only once nothing refused it.
        before_send=[destinations, leak_guard, property_guard, RunStateChanges(secrets_pool.pool)],
        write_ahead=intents,
    )
    secrets.workspaces = forwarder  # the workspace of a secrets call, named as the forwarded routes name theirs
    # Who can see what (the access console): read off the policy decisions use; revokes through `access`.
    access_console = AccessConsole(
        sessionmaker, access, secrets, forwarder, AuditPageTokens(lambda: authenticator.token_key)
    )
    # Registered models of every workspace, `<workspace>.<name>`, and their files by the model's grant.
    account_models = AccountModels(links, authorizer, forwarder.forward, access, stores)
    account = AccountScope(
        links,
        authorizer,
        sessionmaker,
        forwarder.forward,
        runs,
        account_models,
        search_timeout_seconds=settings.server.account_search_timeout_seconds,
    )
    run_metrics = RunMetrics(links, authorizer, sessionmaker)  # the Run API's get_metrics(recursive=True)
    # The registry workflow: requests, approvals, comments and the activity log of registered models. It reads
    # the store directly and applies transitions through the pipeline, so they are guarded and mirrored.
    registry_store = RegistryStore(direct.fetch, forwarder.forward, lambda link: link.store in stageless)
    registry = RegistryWorkflow(sessionmaker, authorizer, access, registry_store, audit)
    aliases = AliasApprovals(registry, sessionmaker, registry_store, audit)  # protected aliases (champion)
    # A model version copied into another workspace's registry, its files streamed store to store.
    promotions = Promotions(links, stores, authorizer, access, registry, sessionmaker, audit, after_write)
    promotion_requests = PromotionRequests(promotions, registry, authorizer, links, sessionmaker, audit)
    # Registry webhooks: deliveries queued with the activities they report, sent by every process (SKIP LOCKED).
    allowed_destinations = AllowList(settings.outbound.allowed_destinations)
    # Webhook secrets (registry webhooks, SQL alerts) are sealed at rest with the built-in vault's keys.
    subscriber_secrets = SubscriberSecrets(
        Keyring.from_environment() if builtin_vault_configured(settings.vaults, os.environ) else None
    )
    webhooks = RegistryWebhooks(
        sessionmaker,
        authorizer,
        registry,
        access,
        allowed_destinations,
        audit,
        subscriber_secrets,
        timeout_seconds=settings.server.webhook_timeout_seconds,
    )
    registry.notify = webhooks.enqueue
    webhook_deliveries = deliverer(
        sessionmaker,
        authorizer,
        allowed_destinations,
        subscriber_secrets,
        Pacing(
            poll_seconds=settings.server.webhook_poll_seconds,
            retry_seconds=settings.server.webhook_retry_seconds,
            max_attempts=settings.server.webhook_max_attempts,
            timeout_seconds=settings.server.webhook_timeout_seconds,
        ),
        keep_days=settings.server.webhook_history_days,
    )

    # SQL alerts: evaluated as their owners by every process's scheduler (one per fire time), notified durably.
    alerts = build_alerts(
        sessionmaker, sql, policy, allowed_destinations, audit, settings, _smtp_password(settings), subscriber_secrets
    )
    alerts.service.saved_queries = queries  # an alert on a saved query reads its text, as its owner, when it runs
    authenticator.sign_in_hooks.append(alerts.service.owner_signed_in)  # the owner's identity-provider groups

    def feed(channel: str) -> Callable[[Callable[[], None]], ChangeFeed]:
        return lambda callback: PostgresNotifications(pools.dsn, channel, callback)

    watchers = [
        link_watcher(workspaces, sessionmaker, feed(CHANGE_CHANNEL), settings.server.link_poll_seconds),
        ReloadLoop("policy watcher", feed(POLICY_CHANNEL), policy.check, settings.server.policy_poll_seconds),
    ]
    # Each read's run id arrives as a notification's payload; the set is reloaded whenever LISTEN is (re)made.
    secret_reads = PostgresNotifications(
        pools.dsn,
        SECRET_READS_CHANNEL,
        tainted.listening,
        on_payload=tainted.add,
        on_lost=tainted.not_listening,
    )
    webhook_feed = PostgresNotifications(pools.dsn, WEBHOOKS_CHANNEL, webhook_deliveries.wake)
    # A worker keeps the protected versions' places of a workspace while this listener tells it of their changes.
    sources_feed = PostgresNotifications(
        pools.dsn,
        SOURCES_CHANNEL,
        protected_sources.listening,
        on_payload=protected_sources.notified,
        on_lost=protected_sources.not_listening,
    )

    async def revision() -> str | None:
        async with autocommit_connection(sessionmaker) as connection:
            return await database_revision(connection)

    readiness = Readiness(revision, lambda: policy.loaded)
    # Each store's health, probed in the background: reported, never a reason to leave the Service.
    store_health = StoreHealth(
        {
            name: _health_check(StoreClient(store, timeout_seconds=STORE_TIMEOUT_SECONDS))
            for name, store in stores.items()
        },
        interval_seconds=settings.server.store_check_interval_seconds,
    )

    def denied(request: Request[Any, Any, Any], exc: GatewayError) -> None:
        """Every refusal of the gateway's own (authentication or authorization) goes to the audit log."""
        if not (exc.denied or isinstance(exc, Unauthenticated | PermissionDenied)):
            return
        DENIED.labels(type(exc).__name__).inc()
        user = request.scope.get("user")
        audit.record(
            entry(
                user.name if isinstance(user, Principal) else "anonymous",
                "request.denied",
                f"{request.scope.get('method', '')} {request.scope.get('path', '')}",
                "denied",
                {
                    "status": exc.status,
                    "error_code": exc.error_code,
                    # Untrusted values; entry() cuts each to a bounded length.
                    "workspace": request.headers.get(NAME_HEADER, ""),
                    **({"workspace_id": request.headers[ID_HEADER]} if ID_HEADER in request.headers else {}),
                    "client": str((request.scope.get("client") or ("",))[0]),
                    "user_agent": request.headers.get("user-agent", ""),
                },
                str(request.scope.get(REQUEST_ID_KEY, "")),  # type: ignore[call-overload,unused-ignore]
            )
        )

    provider = (
        ProviderSignIn(
            oidc,
            settings.oidc.client_id,
            _client_secret(settings),
            settings.oidc.scopes,
        )
        if oidc is not None and settings.oidc.browser_sign_in and sessions is not None
        else None
    )
    web_ui = (
        WebUi(
            UiBuild(build), authenticator, sessions, browser, audit, provider, _provider_name(settings), denial_limiter
        )
        if build is not None and sessions is not None
        else None
    )
    # The account console (gateway/console/): the gateway's own pages, for the web UI's browser sessions.
    console = Console(ConsoleAssets(), authorizer, links) if web_ui is not None else None

    def gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
        denied(request, exc)
        return _gateway_error(request, exc)

    def http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        return body_refusal_audited(request, exc, _http_exception(request, exc))

    def malformed_body(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        return body_refusal_audited(request, exc, _malformed_body(request, exc))

    def body_refusal_audited(request: Request[Any, Any, Any], exc: Exception, response: Response[Any]) -> Response[Any]:
        """A body refused before its handler runs (it does not decode into the route's document): a SCIM change
        so refused is audited as the change denied, as its handler's refusals are (principals/routes.py)."""
        undecoded = isinstance(exc, (ValidationException, *BODY_DECODE_ERRORS)) or isinstance(
            exc.__cause__, SerializationException
        )
        if undecoded and response.status_code == 400:
            audit_undecoded_body(principals, request, response.status_code, _error_code(response))
        return response

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # SIGTERM: unready at once, the server's own shutdown after server.shutdown_delay_seconds (docs/operations.md).
        undo_drain = drain_on_sigterm(readiness, settings.server.shutdown_delay_seconds)
        log.info("database connections per worker", extra={"pools": pools.budget, "total": pools.total()})
        async with sessionmaker() as session, session.begin():
            await workspaces.seed_from_config(session)
        async with sessionmaker() as session:
            await workspaces.reload(session)
        await authenticator.start()
        await policy.reload()
        _warn_reserved_names(policy.snapshot)
        for watcher in watchers:
            watcher.start()
        secret_reads.start()
        webhook_feed.start()
        sources_feed.start()
        webhook_deliveries.start()
        alerts.start()
        await intents.start()  # presence first: from here on this worker's notes are its own
        audit.start()
        relay.start()
        reconciler.start()
        index_sync.start()
        store_health.start()
        checks = asyncio.create_task(_check_configured_links(workspaces))
        gauges = BackgroundLoop(
            "database gauges", lambda: _database_gauges(sessionmaker, index_sync), 15.0, on_error=_no_gauges
        )
        gauges.start()
        _settle_heap()
        try:
            yield
        finally:
            readiness.draining = True
            undo_drain()
            checks.cancel()
            await gauges.stop()
            await store_health.stop()
            await alerts.stop()
            await webhook_deliveries.stop()
            await webhook_feed.stop()
            await sources_feed.stop()
            await relay.stop()
            await intents.stop()
            await bookkeeping.close()
            await reconciler.stop()
            await index_sync.stop()
            await index_pool.close()
            await secrets_pool.close()
            await sql.close()
            for watcher in watchers:
                await watcher.stop()
            await secret_reads.stop()
            await tainted.stop()
            await audit.stop()
            if provider is not None:
                await provider.close()
            if oidc is not None:
                await oidc.close()
            for store in stores.values():
                await store.close()
            for vault in vaults.values():
                await vault.close()
            await engine.dispose()

    return Litestar(
        route_handlers=[
            *forwarding_handlers(
                forwarder,
                max_json_body=settings.server.max_json_body_bytes,
                max_artifact_body=settings.server.max_artifact_body_bytes,
                scopes={ACCOUNT_SCOPE: account},
                # Every stage change follows the workflow's rules and lands in its activity log.
                routes={
                    MODEL_VERSIONS_TRANSITION_STAGE: MlflowTransitionStage(registry, forwarder),
                    REGISTERED_MODELS_SET_ALIAS: MlflowAlias(aliases, forwarder, deleting=False),
                    REGISTERED_MODELS_DELETE_ALIAS: MlflowAlias(aliases, forwarder, deleting=True),
                    MODEL_VERSIONS_SET_TAG: ReservedVersionTag(forwarder, registry),
                    MODEL_VERSIONS_DELETE_TAG: ReservedVersionTag(forwarder, registry),
                    MODEL_VERSIONS_CREATE: ReservedVersionTag(forwarder, creating=True),
                },
            ),
            server_info_handler(capabilities, forwarder),
            WorkspacesController,
            LinksController,
            IndexController,
            RunMetricsController,
            ScimMeController,
            ScimController,
            TokenController,
            TokenManagementController,
            PermissionsController,
            UnityCatalogController,
            AuditController,
            Router("/", route_handlers=[AccessConsoleController], guards=[console_guard(access_console)]),
            SqlStatementsController,
            QueriesController,
            QueryPermissionsController,
            SecretsController,
            TransitionRequestsController,
            CommentsController,
            DatabricksRegistryController,
            ActivitiesController,
            AliasRequestsController,
            RegistrySettingsController,
            PromotionsController,
            PromotionRequestsController,
            RegistryWebhooksController,
            SqlAlertsController,
            *health_handlers(readiness, store_health),
            *(ui_handlers(web_ui) if web_ui is not None else []),
            *(session_handlers(web_ui) if web_ui is not None else []),
            *([console_router(console, *CONSOLE_FEATURES)] if console is not None else []),
        ],
        dependencies={
            "service": Provide(lambda: workspaces, sync_to_thread=False, use_cache=True),
            "sessionmaker": Provide(lambda: sessionmaker, sync_to_thread=False, use_cache=True),
            "authorizer": Provide(lambda: authorizer, sync_to_thread=False, use_cache=True),
            "access": Provide(lambda: access, sync_to_thread=False, use_cache=True),
            "workspaces": Provide(lambda: forwarder, sync_to_thread=False, use_cache=True),  # authz.ports.Workspaces
            "principals": Provide(lambda: principals, sync_to_thread=False, use_cache=True),
            "tokens": Provide(lambda: tokens, sync_to_thread=False, use_cache=True),
            "sql": Provide(lambda: sql, sync_to_thread=False, use_cache=True),
            "queries": Provide(lambda: queries, sync_to_thread=False, use_cache=True),
            "secrets": Provide(lambda: secrets, sync_to_thread=False, use_cache=True),
            "access_console": Provide(lambda: access_console, sync_to_thread=False, use_cache=True),
            "registry": Provide(lambda: registry, sync_to_thread=False, use_cache=True),
            "aliases": Provide(lambda: aliases, sync_to_thread=False, use_cache=True),
            "promotions": Provide(lambda: promotions, sync_to_thread=False, use_cache=True),
            "promotion_requests": Provide(lambda: promotion_requests, sync_to_thread=False, use_cache=True),
            "webhooks": Provide(lambda: webhooks, sync_to_thread=False, use_cache=True),
            "alerts": Provide(lambda: alerts.service, sync_to_thread=False, use_cache=True),
            "reconciler": Provide(lambda: reconciler, sync_to_thread=False, use_cache=True),
            "index_sync": Provide(lambda: index_sync, sync_to_thread=False, use_cache=True),
            "run_metrics": Provide(lambda: run_metrics, sync_to_thread=False, use_cache=True),
        },
        middleware=[
            DefineMiddleware(
                AuthenticationMiddleware,  # type: ignore[arg-type]
                authenticator=authenticator,
                limiter=denial_limiter,
                principal_limiter=PrincipalLimiter(
                    settings.server.principal_requests_per_second, settings.server.principal_burst
                ),
                browser=browser,
            )
        ],
        exception_handlers={
            GatewayError: gateway_error,
            HTTPException: http_exception,
            **dict.fromkeys(BODY_DECODE_ERRORS, malformed_body),
            # The database down: 503 for every route, in MLflow's error shape (gateway/db/errors.py).
            **dict.fromkeys(DATABASE_ERRORS, _database_error),
            Exception: _unexpected,
        },
        lifespan=[lifespan],
        # The account-admin guard's catch-up on a refusal (gateway/principals/guards.py).
        state=State({CATCH_UP: authorizer}),
        openapi_config=openapi_config(),
        logging_config=None,
        request_max_body_size=settings.server.max_json_body_bytes,
        debug=False,
    )


# Objects allocated (less freed) before the youngest generation is collected; Python's default is 700.
GC_YOUNG_THRESHOLD = 10_000


def _settle_heap() -> None:
    """Once started: what start-up built is moved out of the cyclic collector's sight, and young objects are
    collected less often.

    Under load every request's objects that are alive while a collection runs are promoted, and enough
    promotions set off a full collection, which walked the 250,000 objects a worker holds after start-up
    (the app, its routes, the policy snapshot, SQLAlchemy's metadata) in about 0.1 s each: a sixth of a
    forwarded call's CPU. Frozen, they are never walked again (they live as long as the worker; garbage among
    them is still freed when its last reference goes). With 64 requests in flight a collection every 700
    allocations walked their live objects over and over: every 10,000 is a tenth of the collections for the
    same garbage found (docs/performance.md).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _health_check(client: StoreClient) -> Callable[[], Awaitable[None]]:
    """The store's `/health`: up when it answers below 500 (raises otherwise, or when it does not answer)."""

    async def check() -> None:
        status = await client.ping()
        if status >= 500:
            raise StoreUnavailableAnswer(f"health check answered {status}")

    return check


class StoreUnavailableAnswer(Exception):
    pass


async def _database_gauges(sessionmaker: async_sessionmaker[AsyncSession], index_sync: IndexSync) -> None:
    """Outbox depth, its oldest entry and index lag per workspace, as gauges (the dashboard's; docs/operations.md).

    Labelled by the workspace's id, never its name: `/metrics` answers anyone who can reach it, and would list every
    workspace's name to a caller without credentials (docs/security.md, invariant 11); an id also keeps one series
    through a rename, where a name left the old one frozen at its last value."""
    async with sessionmaker() as session:
        outbox = await OutboxRepository(session).status()
    for row in outbox:
        workspace_id = str(row["workspace_id"])
        OUTBOX_PENDING.labels(workspace_id).set(row["pending"])
        OUTBOX_OLDEST.labels(workspace_id).set(row["oldest_pending_seconds"])
    for state in await index_sync.status():
        if state["lag_seconds"] is not None:
            INDEX_LAG.labels(state["workspace_id"]).set(state["lag_seconds"])


def _no_gauges(exc: Exception) -> None:
    log.debug("database gauges not read: %s", type(exc).__name__)


def _client_secret(settings: Settings) -> str:
    """The OIDC client's secret for browser sign-in ("" for a public client)."""
    oidc = settings.oidc
    if not (oidc.client_secret_env or oidc.client_secret_file):
        return ""
    return _secret(oidc.client_secret_env, oidc.client_secret_file, what="oidc.client_secret")


def _smtp_password(settings: Settings) -> str:
    """The SMTP login's password for alert e-mail ("" without a login): from the environment or a file only."""
    smtp = settings.smtp
    if not (smtp.host and smtp.username):
        return ""
    return _secret(smtp.password_env, smtp.password_file, what="smtp.password")


def _provider_name(settings: Settings) -> str:
    """What the sign-in button calls the identity provider: its host name."""
    return urlsplit(settings.oidc.issuer).hostname or "the identity provider"


def _warn_reserved_names(snapshot: PolicySnapshot) -> None:
    """Name each group or service principal given a system group's name before it was reserved
    (gateway/principals/names.py): nothing changes it but a rename, and no grant names it."""
    for info in snapshot.principals.values():
        if names.reserved(info.kind, info.name):
            log.warning(
                "%s %s is named %r, a system group's name, reserved: rename it (SCIM PATCH displayName); until then "
                "no grant can name it, nothing else of it changes and SQL's is_account_group_member('account users') "
                "means every principal of the account",
                info.kind.replace("_", " "),
                info.id,
                info.name,
            )


async def _store_health(store: Store) -> str:
    """ "ok" when the store answers its health check within 2 s, whatever it answers."""
    try:
        await StoreClient(store, timeout_seconds=2).ping()
    except Exception as exc:
        return f"unreachable: {type(exc.__cause__ or exc).__name__}"
    return "ok"


async def _check_configured_links(workspaces: WorkspaceService) -> None:
    """Prepare configured links; warn (never fail start-up) about stores linking would refuse or warn about."""
    for link in workspaces.links.all():
        try:
            await workspaces.verify_link(link)
        except GatewayError as exc:
            log.warning("workspace %s: %s", link.name, exc.message)


def asgi_app(settings: Settings, database_url: str) -> AccessLog:
    """The app as served: the access log wraps everything (unmatched routes and overload refusals included),
    then admission control (authn/limits.py) caps the requests worked on at once."""
    server = settings.server
    admitted = Admission(
        create_app(settings, database_url),
        max_in_flight=server.max_in_flight,
        max_queued=server.max_queued,
        queue_wait=server.queue_wait_seconds,
    )
    return AccessLog(admitted, enabled=server.access_log)  # type: ignore[arg-type]


def asgi_from_env() -> AccessLog:
    """Factory for uvicorn workers: settings from FEDGATE_CONFIG and FEDGATE_* (the database URL included)."""
    from gateway.observability.logging import configure_logging

    configure_logging()
    settings = load_settings()
    if not settings.database.url:
        raise ConfigError("database.url: workers need the URL of the database started by `fedgate serve`")
    return asgi_app(settings, settings.database.url)
