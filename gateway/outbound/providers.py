"""Where MLflow 3.17.2's AI gateway sends a provider's requests, from the provider and its key's `auth_config`.

A model definition names a provider and a secret (a provider key); an endpoint's calls go wherever MLflow's
`gateway_api._build_endpoint_config` sends that provider with that key: the key's `auth_config.api_base` for
the providers that honour one, else the provider's own API. Providers MLflow does not know by name go through
LiteLLM, which honours `api_base` and otherwise picks a default of its own the gateway cannot know: they need
an `api_base`. So does a provider without a public default (Azure, Databricks, and Ollama, whose default is
the store's own host `localhost:11434`, which no allow-list entry should name).

A few `auth_config` values become part of a URL without being one: Bedrock's region and Vertex AI's location
are written into the host (`bedrock-runtime.{region}.amazonaws.com`, `{location}-aiplatform.googleapis.com`),
so a "region" of `evil.example/#` would choose the host; Azure's deployment and API version and Vertex's project
are written into the path. Each must be a plain name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Keys LiteLLM reads as destinations (mlflow.utils.validation.GATEWAY_DESTINATION_KEYS): only `api_base` is
# accepted, in `auth_config`, and checked; MLflow refuses the others too, the gateway does not rely on it.
DESTINATION_KEYS = frozenset({"api_base", "base_url", "model_list", "fallbacks", "custom_llm_provider"})
HOST_PARTS = {"aws_region_name", "vertex_location"}  # written into a host name
PATH_PARTS = {"deployment_name", "api_version", "vertex_project"}  # written into a path
HOST_PART_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
PATH_PART_RE = re.compile(r"[A-Za-z0-9_.-]{1,256}\Z")

# Providers that send to `api_base` when the key has one, and otherwise to this default ("" : none).
HONOURS_API_BASE = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "typesafe": "https://api.typesafe.ai/v1",
    "groq": "https://api.groq.com/openai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "xai": "https://api.x.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "portkey": "https://api.portkey.ai/v1",
    "ollama": "http://localhost:11434/v1",
    "azure": "",
    "databricks": "",
    "databricks-model-serving": "",
}
# Providers whose calls always go to their own API, whatever `api_base` says.
FIXED = {
    "gemini": "https://generativelanguage.googleapis.com/v1beta",
    "mistral": "https://api.mistral.ai/v1",
}
MULTI_REGION_LOCATIONS = frozenset({"eu", "us"})  # Vertex AI's multi-region locations


class ProviderError(ValueError):
    """The provider and key name no destination the gateway can check: the reason is the message."""


def plain_parts(auth_config: Mapping[str, Any]) -> None:
    """Refuse `auth_config` values that would be written into a host or path unless they are plain names."""
    for key, value in auth_config.items():
        if key in HOST_PARTS and value not in (None, "") and not (isinstance(value, str) and HOST_PART_RE.match(value)):
            raise ProviderError(f"auth_config.{key} must be a region or location name (letters, digits, '-')")
        if key in PATH_PARTS and value not in (None, "") and not (isinstance(value, str) and PATH_PART_RE.match(value)):
            raise ProviderError(f"auth_config.{key} must be a plain name (letters, digits, '_', '.', '-')")
        if isinstance(value, str) and value in (".", "..") and key in PATH_PARTS:
            raise ProviderError(f"auth_config.{key} may not be '.' or '..'")


def api_base(auth_config: Mapping[str, Any]) -> str:
    """The key's `api_base` as MLflow stores it: stripped, "" when blank or absent."""
    value = auth_config.get("api_base")
    return value.strip() if isinstance(value, str) else ""


def provider_destinations(provider: str, auth_config: Mapping[str, Any]) -> list[str]:
    """The URLs the store will call for `provider` with a key of this `auth_config`."""
    plain_parts(auth_config)
    base = api_base(auth_config)
    if provider in FIXED:
        return [FIXED[provider]]
    if provider in ("bedrock", "amazon-bedrock"):
        region = auth_config.get("aws_region_name")
        if not region:
            raise ProviderError("a Bedrock key needs auth_config.aws_region_name")
        return [f"https://bedrock-runtime.{region}.amazonaws.com"]
    if provider == "vertex_ai":
        location = auth_config.get("vertex_location")
        if not location:
            raise ProviderError("a Vertex AI key needs auth_config.vertex_location")
        if location == "global":
            return ["https://aiplatform.googleapis.com"]
        if location in MULTI_REGION_LOCATIONS:
            return [f"https://aiplatform.{location}.rep.googleapis.com"]
        return [f"https://{location}-aiplatform.googleapis.com"]
    if base:
        return [base]
    default = HONOURS_API_BASE.get(provider, "")
    if provider == "openai" and auth_config.get("api_type") in ("azure", "azuread"):
        default = ""  # Azure OpenAI: the deployment's own host
    if not default:
        raise ProviderError(f"provider {provider!r} needs auth_config.api_base: the gateway cannot tell where it calls")
    return [default]
