"""JSON schemas of the two custom resources the manifests use, for the offline validation of tests/unit/test_k8s.py.

kubernetes-validate carries the schemas of Kubernetes' own kinds only. These follow the operators' CRD
references (CloudNativePG `postgresql.cnpg.io/v1` Cluster, Prometheus operator `monitoring.coreos.com/v1`
ServiceMonitor) for the fields the manifests set, strictly: a field not listed here is refused, so a
misspelt or misplaced key fails the test as it would fail the CRD's structural schema.
"""

from __future__ import annotations

from typing import Any

_STRING: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_QUANTITIES: dict[str, Any] = {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}
_RESOURCES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"requests": _QUANTITIES, "limits": _QUANTITIES},
}
_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": _STRING,
        "namespace": _STRING,
        "labels": {"type": "object", "additionalProperties": _STRING},
        "annotations": {"type": "object", "additionalProperties": _STRING},
    },
    "additionalProperties": False,
}
_LABEL_SELECTOR: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": {"type": "object", "additionalProperties": _STRING}},
}


def _kind(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


CLUSTER = _kind(
    "postgresql.cnpg.io/v1",
    "Cluster",
    {
        "type": "object",
        "required": ["instances", "storage"],
        "additionalProperties": False,
        "properties": {
            "instances": {"type": "integer", "minimum": 1},
            "imageName": _STRING,
            "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
            "minSyncReplicas": _INT,
            "maxSyncReplicas": _INT,
            "postgresql": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"parameters": {"type": "object", "additionalProperties": _STRING}},
            },
            "bootstrap": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "initdb": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"database": _STRING, "owner": _STRING},
                    }
                },
            },
            "storage": {
                "type": "object",
                "additionalProperties": False,
                "required": ["size"],
                "properties": {"size": _STRING, "storageClass": _STRING},
            },
            "resources": _RESOURCES,
            "monitoring": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"enablePodMonitor": {"type": "boolean"}},
            },
        },
    },
)

SERVICE_MONITOR = _kind(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": _LABEL_SELECTOR,
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": _STRING,
                        "path": _STRING,
                        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                    },
                },
            },
        },
    },
)

CUSTOM_RESOURCES = {
    ("postgresql.cnpg.io/v1", "Cluster"): CLUSTER,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}
