"""The before-send check of calls that name a destination the store will send requests to.

Webhooks (`/api/2.0/mlflow/webhooks`): the `url` of a webhook created or updated, and, when one is tested, the
URL the store holds for it (a webhook stored around the gateway, or before the allow-list changed, is tested
only if its URL is allowed now).

The AI gateway (providers.py says where each provider calls): a provider key's `auth_config` and
`secret_value` when it is created or updated (no destination key but a checked `api_base`, plain region and
path names, and the destination of the provider it names); a model definition's provider with its key,
looked up in the store, when one is created or changed; and when a key's `auth_config` is replaced, the
destination of every model definition that uses it.

Jobs (federation/guard/jobs.py says what each acts on) and registered scorers: the model of every scorer a call
carries (a judge's `model`, `<provider>:/<model>`, goes to that provider's own API with the store's key; `gateway:/`
to an AI-gateway endpoint, whose destinations were checked when it was configured), issue detection's provider
with its key's `auth_config` when it names one, and every model a prompt optimisation's optimizer settings name.
A scorer or optimizer setting holding a destination key (`api_base`, `base_url`, ...) is refused: a job's calls go
only where its provider sends them. A provider whose destination the gateway cannot tell is refused too.

A destination the strict parse refuses answers 400 INVALID_PARAMETER_VALUE; one the allow-list does not hold
answers 403 PERMISSION_DENIED (audited like every refusal). Nothing of a refused call reaches the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import msgspec

from gateway.core.destinations import AllowList, DestinationError, parse_destination
from gateway.core.errors import InvalidParameter, PermissionDenied
from gateway.core.links import WorkspaceLink
from gateway.core.route_table import Resource, RouteSpec
from gateway.federation.guard.jobs import (
    DETECT_ISSUES,
    INVOKE_SCORER,
    OPTIMIZE_PROMPTS,
    STARTED_BY,
    SUBMIT,
    decoded_text,
    nodes,
    serialized_scorers,
)
from gateway.federation.hooks import Held, PendingCall
from gateway.outbound.providers import DESTINATION_KEYS, ProviderError, api_base, plain_parts, provider_destinations

# (link, path, query) -> (status, body): the gateway's own reads of a workspace's store (federation/direct.py)
Fetch = Callable[[WorkspaceLink, str, str], Awaitable[tuple[int, bytes]]]

WEBHOOK_TEST = "POST /mlflow/webhooks/{webhook_id:str}/test"
SECRET_UPDATE = "POST /mlflow/gateway/secrets/update"
MODEL_UPDATE = "POST /mlflow/gateway/model-definitions/update"
GATEWAY = "/api/3.0/mlflow/gateway"
SCORER_REGISTER = "POST /mlflow/scorers/register"
AI_GATEWAY_SCHEME = "gateway"  # `gateway:/<endpoint>`: the store's AI gateway, configured through checked routes


class DestinationCheck:
    """Refuses a call whose destination is malformed or not on the allow-list (an empty list allows none)."""

    def __init__(self, allowed: AllowList, fetch: Fetch) -> None:
        self.allowed = allowed
        self.fetch = fetch

    def wants(self, spec: RouteSpec, link: WorkspaceLink) -> bool:
        return spec.destinations

    async def check(self, call: PendingCall) -> Held | None:
        if call.spec.resource is Resource.WEBHOOK:
            await self._webhook(call)
        elif call.spec.resource is Resource.AI_GATEWAY_SECRET:
            await self._provider_key(call)
        elif call.spec.resource is Resource.AI_GATEWAY:
            await self._model_definition(call)
        elif call.spec.resource is Resource.JOB:
            await self._job(call)
        elif call.spec.name == SCORER_REGISTER:
            for scorer in serialized_scorers(INVOKE_SCORER, call.body.document):
                self._settings("scorer", scorer)
        return None

    async def _job(self, call: PendingCall) -> None:
        document = call.body.document
        if call.spec.name == SUBMIT:
            job_name, params = document.get("job_name"), document.get("params")
            if not isinstance(job_name, str) or not isinstance(params, dict):
                return  # the store refuses it
        else:
            job_name, params = STARTED_BY[call.spec.name], document
        for scorer in serialized_scorers(job_name, params):
            self._settings("scorer", scorer)
        if job_name == DETECT_ISSUES and not params.get("endpoint_name"):
            provider = params.get("provider")
            if isinstance(provider, str) and provider:
                auth_config: dict[str, Any] = {}
                if secret_id := params.get("secret_id"):
                    secret = await self._get(call.link, "secrets/get", "secret_id", secret_id)
                    auth_config = ((secret or {}).get("secret") or {}).get("auth_config") or {}
                self._require_provider(provider.lower(), auth_config)
            elif isinstance(params.get("model"), str):
                self._require_model(params["model"])
        if job_name == OPTIMIZE_PROMPTS:
            config: dict[str, Any] = params["config"] if isinstance(params.get("config"), dict) else {}
            settings: Any = params.get("optimizer_config")
            if isinstance(config.get("optimizer_config_json"), str):
                # Text that is not JSON holds no setting (the store refuses it).
                settings = decoded_text(config["optimizer_config_json"], "optimizer_config_json")
            self._settings("optimizer setting", settings)

    def _settings(self, what: str, root: Any) -> None:
        """No destination key at any depth, and every `*model` value a model whose destination is allowed."""
        for node in nodes(root):
            if not isinstance(node, dict):
                continue
            if keys := DESTINATION_KEYS & set(node):
                raise InvalidParameter(
                    f"A {what} may not hold {', '.join(sorted(keys))}: a job's calls go only where its provider "
                    "sends them."
                )
            for key, value in node.items():
                if isinstance(key, str) and key.endswith("model") and isinstance(value, str) and value:
                    self._require_model(value)

    def _require_model(self, uri: str) -> None:
        """`<provider>:/<model>` (MLflow's model URIs) or LiteLLM's `<provider>/<model>`: the provider's destination."""
        if ":/" in uri:
            provider = uri.split(":/", 1)[0]
        elif "/" in uri:
            provider = uri.split("/", 1)[0]
        else:
            raise InvalidParameter(f"Model {uri!r}: name it as <provider>:/<model>, so its destination can be checked.")
        if provider == AI_GATEWAY_SCHEME:
            return
        self._require_provider(provider.lower(), {})

    async def _provider_key(self, call: PendingCall) -> None:
        document = call.body.document
        secret_value = document.get("secret_value")
        if isinstance(secret_value, dict) and (keys := DESTINATION_KEYS & set(secret_value)):
            raise InvalidParameter(f"secret_value may not hold {', '.join(sorted(keys))}: a key's destination is "
                                   "auth_config.api_base, checked against the allowed destinations.")  # fmt: skip
        auth_config = document.get("auth_config")
        if auth_config is None:
            auth_config = {}
        if not isinstance(auth_config, dict):
            raise InvalidParameter("auth_config must be an object.")
        if keys := (DESTINATION_KEYS - {"api_base"}) & set(auth_config):
            raise InvalidParameter(f"auth_config may not hold {', '.join(sorted(keys))}: use api_base.")
        try:
            plain_parts(auth_config)
        except ProviderError as exc:
            raise InvalidParameter(f"{exc}.") from None
        if base := api_base(auth_config):
            self.require("provider api_base", base)
        provider = document.get("provider")
        if isinstance(provider, str) and provider:
            self._require_provider(provider, auth_config)
        secret_id = document.get("secret_id")
        if call.spec.name == SECRET_UPDATE and auth_config and isinstance(secret_id, str):
            # The key's new auth_config replaces the old one for every model definition that uses it.
            for model in await self._models_using(call.link, secret_id):
                self._require_provider(str(model.get("provider", "")), auth_config)

    async def _model_definition(self, call: PendingCall) -> None:
        document = call.body.document
        provider, secret_id = document.get("provider"), document.get("secret_id")
        if call.spec.name == MODEL_UPDATE:
            if not provider and not secret_id:
                return  # neither the provider nor the key changes: nor does the destination
            current = await self._get(
                call.link, "model-definitions/get", "model_definition_id", document.get("model_definition_id")
            )
            if current is None:
                return  # the store answers for a model definition it does not have
            current = current.get("model_definition") or {}
            provider, secret_id = provider or current.get("provider"), secret_id or current.get("secret_id")
        if not isinstance(provider, str) or not isinstance(secret_id, str) or not provider or not secret_id:
            return  # the store refuses a model definition without both
        secret = await self._get(call.link, "secrets/get", "secret_id", secret_id)
        if secret is None:
            return  # the store answers for a key it does not have
        auth_config = (secret.get("secret") or {}).get("auth_config") or {}
        self._require_provider(provider, auth_config)

    def _require_provider(self, provider: str, auth_config: dict[str, Any]) -> None:
        try:
            destinations = provider_destinations(provider, auth_config)
        except ProviderError as exc:
            raise InvalidParameter(f"{exc}.") from None
        for destination in destinations:
            self.require(f"destination of provider {provider!r}", destination)

    async def _get(self, link: WorkspaceLink, path: str, name: str, value: Any) -> dict[str, Any] | None:
        if not isinstance(value, str) or not value:
            return None
        status, body = await self.fetch(link, f"{GATEWAY}/{path}", urlencode({name: value}))
        if status != 200:
            return None
        found = msgspec.json.decode(body)
        return found if isinstance(found, dict) else None

    async def _models_using(self, link: WorkspaceLink, secret_id: str) -> list[dict[str, Any]]:
        found = await self._get(link, "model-definitions/list", "secret_id", secret_id)
        models = (found or {}).get("model_definitions") or []
        return [model for model in models if isinstance(model, dict) and model.get("secret_id") == secret_id]

    async def _webhook(self, call: PendingCall) -> None:
        if call.spec.name == WEBHOOK_TEST:
            webhook_id = str(call.path_params.get("webhook_id", ""))
            status, body = await self.fetch(call.link, f"/api/2.0/mlflow/webhooks/{quote(webhook_id, safe='')}", "")
            if status != 200:
                return  # the store answers for a webhook it does not have
            stored = msgspec.json.decode(body).get("webhook") or {}
            self.require("webhook URL", stored.get("url"), stored=True)
            return
        if "url" in call.body.document:
            self.require("webhook URL", call.body.document["url"])

    def require(self, what: str, value: Any, *, stored: bool = False) -> None:
        """`value` is a destination on the allow-list, or the call is refused."""
        try:
            destination = parse_destination(value)
        except DestinationError as exc:
            if stored:
                raise PermissionDenied(
                    f"The {what} the store holds is not one this gateway can check: {exc}."
                ) from None
            raise InvalidParameter(f"Invalid {what} {value!r}: {exc}.") from None
        if not self.allowed.allows(destination):
            raise PermissionDenied(
                f"The {what} {destination} is not an allowed destination of this gateway ([outbound] "
                "allowed_destinations); ask an account admin to allow it."
            )
