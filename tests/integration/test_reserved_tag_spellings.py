"""Every spelling of a tag key the gateway reserves or gates: what MLflow 3.17.2's own server (sqlite) stores, and
what the gateway answers. Differential, as tests/integration/test_trace_source_runs.py is for a trace's run.

The keys: a registered model's `mlflow.prompt.is_prompt` (CAN_MANAGE on the model), the workflow's version tags
`fedgate.stage` and `fedgate.source_read_only` (the gateway's alone), a trace's `mlflow.artifactLocation` (the
store's alone), a run property `fedgate.property.<name>` (add-only) and the dual-tracking relay's provenance tags
(`fedgate.source_run_id` and its neighbours, the gateway's alone on experiments, runs, logged models, registered
models and model versions, by every route that sets or deletes a tag of one). Each spelling (JSON escapes of the
key or of the field name, surrogates, case, blanks and NUL around, fullwidth and homoglyph letters, accents, the key
or the field given twice, `Key`/`KEY` for `key`, lists, the query string) is sent as raw bytes, so repeated keys
reach each parser as written:

1. to the store directly, on an object of its own: does the store now hold (or no longer hold) the key, spelt
   exactly as it reads it back?
2. through the gateway, by a caller the key is refused to, on an object of theirs.

Every spelling the store reads as the key must be refused by the gateway (4xx in MLflow's words), and nothing the
gateway let through may have changed the key on the gateway's object.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.conftest import Stack
from tests.support.identity import Admin, Person, unique

pytestmark = pytest.mark.integration
TIMEOUT = 60
WORKSPACE = "team-a"
PROMPT = "mlflow.prompt.is_prompt"
STAGE = "fedgate.stage"
READ_ONLY = "fedgate.source_read_only"
LOCATION = "mlflow.artifactLocation"
PROPERTY = "fedgate.property.batch"
SOURCE_RUN = "fedgate.source_run_id"
SOURCE_WORKSPACE = "fedgate.source_workspace"
SOURCE_EXPERIMENT = "fedgate.source_experiment_id"
SOURCE_MODEL = "fedgate.source_model_id"
SOURCE_VERSION = "fedgate.source_version"
PROVENANCE = "provenance"  # the prefix of the provenance cases' names
# The spellings of the provenance cases beyond their set-tag routes', which are sent in every spelling.
SOME = ("as written", "first character escaped", "field name escaped", "upper case", "before a space")
SOME += ("fullwidth first letter", "a combining accent", "twice, the key last")
ELSEWHERE = "file:///elsewhere"
STAMP = "2026-12-04T00:00:00Z"
_CYRILLIC = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441"}


@dataclass
class Target:
    """Where calls go: the store directly, or the gateway as one caller."""

    url: str
    session: requests.Session

    def call(self, method: str, path: str, body: str | bytes | None = None, **headers: str) -> requests.Response:
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        sent = {"Content-Type": "application/json", **headers} if data is not None else headers
        return self.session.request(method, self.url + path, data=data, headers=sent, timeout=TIMEOUT)

    def ok(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        if method == "GET":
            answer = self.session.get(self.url + path, params=body, timeout=TIMEOUT)
        else:
            answer = self.call(method, path, json.dumps(body) if body is not None else None)
        assert answer.status_code == 200, (path, answer.text)
        return dict(answer.json())

    # -- objects and what they hold -----------------------------------------------------------------------------

    def model(self, tags: dict[str, str] | None = None) -> str:
        name = unique("reserved")
        body = {"name": name, "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        self.ok("POST", "/api/2.0/mlflow/registered-models/create", body)
        return name

    def model_tags(self, name: str) -> dict[str, str]:
        found = self.ok("GET", "/api/2.0/mlflow/registered-models/get", {"name": name})["registered_model"]
        return {t["key"]: t.get("value", "") for t in found.get("tags", [])}

    def experiment(self) -> str:
        made = self.ok("POST", "/api/2.0/mlflow/experiments/create", {"name": unique("reserved")})
        return str(made["experiment_id"])

    def run(self, experiment_id: str, tags: dict[str, str] | None = None) -> str:
        body = {"experiment_id": experiment_id, "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        return str(self.ok("POST", "/api/2.0/mlflow/runs/create", body)["run"]["info"]["run_id"])

    def run_tags(self, run_id: str) -> dict[str, str]:
        found = self.ok("GET", "/api/2.0/mlflow/runs/get", {"run_id": run_id})["run"]
        return {t["key"]: t.get("value", "") for t in found.get("data", {}).get("tags", [])}

    def version(self, name: str, run_id: str, tags: dict[str, str] | None = None) -> str:
        body = {
            "name": name,
            "source": f"runs:/{run_id}/model",
            "run_id": run_id,
            "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
        }
        return str(self.ok("POST", "/api/2.0/mlflow/model-versions/create", body)["model_version"]["version"])

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        found = self.ok("GET", "/api/2.0/mlflow/model-versions/get", {"name": name, "version": version})
        return {t["key"]: t.get("value", "") for t in found["model_version"].get("tags", [])}

    def experiment_tags(self, experiment_id: str) -> dict[str, str]:
        found = self.ok("GET", "/api/2.0/mlflow/experiments/get", {"experiment_id": experiment_id})["experiment"]
        return {t["key"]: t.get("value", "") for t in found.get("tags", [])}

    def logged_model(self, experiment_id: str, tags: dict[str, str] | None = None) -> str:
        body = {"experiment_id": experiment_id, "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        return str(self.ok("POST", "/api/2.0/mlflow/logged-models", body)["model"]["info"]["model_id"])

    def logged_model_tags(self, model_id: str) -> dict[str, str]:
        found = self.ok("GET", f"/api/2.0/mlflow/logged-models/{model_id}")["model"]["info"]
        tags = found.get("tags") or []
        return dict(tags) if isinstance(tags, dict) else {t["key"]: t.get("value", "") for t in tags}

    def trace(self, experiment_id: str) -> str:
        trace_id = f"tr-{uuid.uuid4().hex}"
        self.ok("POST", "/api/3.0/mlflow/traces", {"trace": {"trace_info": _trace_info(trace_id, experiment_id)}})
        return trace_id

    def trace_tags(self, trace_id: str) -> dict[str, str]:
        return dict(self.ok("GET", f"/api/3.0/mlflow/traces/{trace_id}")["trace"]["trace_info"].get("tags", {}))


def _trace_info(trace_id: str, experiment_id: str) -> dict[str, Any]:
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
    return {"trace_id": trace_id, "trace_location": location, "request_time": STAMP, "state": "OK"}


# -- spellings ------------------------------------------------------------------------------------------------------


def _escaped(text: str, every: bool = False) -> str:
    """`text` as the inside of a JSON string, its first (or every) character a \\u escape."""
    chosen = text if every else text[:1]
    return "".join("\\u" + format(ord(c), "04x") for c in chosen) + ("" if every else text[1:])


def _homoglyph(key: str) -> str:
    for i, c in enumerate(key):
        if c in _CYRILLIC:
            return key[:i] + _CYRILLIC[c] + key[i + 1 :]
    return key


def key_spellings(key: str) -> dict[str, str]:
    """JSON texts of a `key` member naming `key` (or a key a store might read so), by spelling."""
    q = json.dumps

    def member(text: str) -> str:
        return f'"key": {text}'

    return {
        "as written": member(q(key)),
        "first character escaped": member(f'"{_escaped(key)}"'),
        "every character escaped": member(f'"{_escaped(key, every=True)}"'),
        "field name escaped": f'"\\u006bey": {q(key)}',
        "upper case": member(q(key.upper())),
        "title case": member(q(key.title())),
        "after a space": member(q(" " + key)),
        "before a space": member(q(key + " ")),
        "before a tab": member(q(key + "\t")),
        "before a newline": member(q(key + "\n")),
        "before a NUL": member(f'"{key}\\u0000"'),
        "after a NUL": member(f'"\\u0000{key}"'),
        "before a lone surrogate": member(f'"{key}\\ud800"'),
        "before a surrogate pair": member(f'"{key}\\ud83d\\ude00"'),
        "fullwidth first letter": member(q(chr(ord(key[0]) + 0xFEE0) + key[1:])),
        "a Cyrillic homoglyph": member(q(_homoglyph(key))),
        "a combining accent": member(q(key[0] + "\u0301" + key[1:])),
        "twice, the key last": f'"key": "team", "key": {q(key)}',
        "twice, the key first": f'"key": {q(key)}, "key": "team"',
        "twice, escaped, the key last": f'"key": "team", "\\u006bey": {q(key)}',
        "as Key": f'"Key": {q(key)}',
        "as KEY": f'"KEY": {q(key)}',
        "in a list": member(f"[{q(key)}]"),
        "in a nested list": member(f"[[{q(key)}]]"),
        "in a list after another": member(f'["team", {q(key)}]'),
        "in an object": member(f'{{"key": {q(key)}}}'),
    }


def map_spellings(key: str, value: str) -> dict[str, str]:
    """JSON texts of a map (`{...}`) holding `key` (or a key a store might read so) with `value`, by spelling."""
    q = json.dumps
    v = q(value)
    return {
        "as written": f"{{{q(key)}: {v}}}",
        "first character escaped": f'{{"{_escaped(key)}": {v}}}',
        "every character escaped": f'{{"{_escaped(key, every=True)}": {v}}}',
        "upper case": f"{{{q(key.upper())}: {v}}}",
        "after a space": f"{{{q(' ' + key)}: {v}}}",
        "before a space": f"{{{q(key + ' ')}: {v}}}",
        "before a NUL": f'{{"{key}\\u0000": {v}}}',
        "fullwidth first letter": f"{{{q(chr(ord(key[0]) + 0xFEE0) + key[1:])}: {v}}}",
        "twice, the value last": f'{{{q(key)}: "x", {q(key)}: {v}}}',
        "twice, escaped": f'{{{q(key)}: "x", "{_escaped(key)}": {v}}}',
    }


def item_spellings(key: str, value: str, items: str = "tags") -> dict[str, str]:
    """JSON texts of an `items` member (a list of key/value objects) holding `key` with `value`, by spelling."""
    q = json.dumps
    found = {
        f"item {spelt}": f'"{items}": [{{{text}, "value": {q(value)}}}]' for spelt, text in key_spellings(key).items()
    }
    plain = f'{{"key": {q(key)}, "value": {q(value)}}}'
    found[f"{items} twice, the key last"] = f'"{items}": [{{"key": "team", "value": "x"}}], "{items}": [{plain}]'
    found[f"{items} twice, the key first"] = f'"{items}": [{plain}], "{items}": [{{"key": "team", "value": "x"}}]'
    found["item's value twice"] = f'"{items}": [{{"key": {q(key)}, "value": "x", "value": {q(value)}}}]'
    found["the key in two items"] = f'"{items}": [{{"key": {q(key)}, "value": "x"}}, {plain}]'
    return found


# -- cases ----------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One spelling sent by one route. `prepare` makes the object it acts on (fresh, or the one given), `send` sends
    the spelling, `changed` tells whether the object's key (spelt exactly) changed."""

    name: str
    prepare: Callable[[Target, Any], Any]
    send: Callable[[Target, Any], requests.Response]
    changed: Callable[[Target, Any], bool]
    notes: list[str] = field(default_factory=list)


def _query_text(**fields: str) -> str:
    return "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in fields.items())


def cases() -> list[Case]:
    found: list[Case] = []

    def add(
        name: str,
        prepare: Callable[[Target, Any], Any],
        send: Callable[[Target, Any], requests.Response],
        changed: Callable[[Target, Any], bool],
    ) -> None:
        found.append(Case(name, prepare, send, changed))

    # A prompt's marker on its registered model: CAN_MANAGE. The object: the model's name.
    def prompt_model(t: Target, given: Any) -> Any:
        return given["prompt"] if given else t.model({PROMPT: "true"})

    def unmarked(t: Target, name: str) -> bool:
        return t.model_tags(name).get(PROMPT) != "true"

    for spelt, text in key_spellings(PROMPT).items():
        add(
            f"registered-models/set-tag, {spelt}",
            prompt_model,
            lambda t, n, x=text: t.call(
                "POST", "/api/2.0/mlflow/registered-models/set-tag", f'{{"name": {json.dumps(n)}, {x}, "value": "0"}}'
            ),
            unmarked,
        )
        add(
            f"registered-models/delete-tag, {spelt}",
            prompt_model,
            lambda t, n, x=text: t.call(
                "DELETE", "/api/2.0/mlflow/registered-models/delete-tag", f'{{"name": {json.dumps(n)}, {x}}}'
            ),
            unmarked,
        )
    add(
        "registered-models/delete-tag, key in the query",
        prompt_model,
        lambda t, n: t.call(
            "DELETE",
            "/api/2.0/mlflow/registered-models/delete-tag?" + _query_text(name=n, key=PROMPT),
            f'{{"name": {json.dumps(n)}}}',
        ),
        unmarked,
    )

    # The workflow's version tags: nobody's. The object: (model, version) holding fedgate.source_read_only.
    def version(t: Target, given: Any) -> Any:
        if given:
            return given["model"], given["version"](t)
        name = t.model()
        return name, t.version(name, t.run(t.experiment()), {READ_ONLY: "true"})

    def staged(t: Target, mv: tuple[str, str]) -> bool:
        return STAGE in t.version_tags(*mv)

    def freed(t: Target, mv: tuple[str, str]) -> bool:
        return READ_ONLY not in t.version_tags(*mv)

    def version_body(mv: tuple[str, str], extra: str) -> str:
        return f'{{"name": {json.dumps(mv[0])}, "version": "{mv[1]}", {extra}}}'

    for spelt, text in key_spellings(STAGE).items():
        add(
            f"model-versions/set-tag {STAGE}, {spelt}",
            version,
            lambda t, mv, x=text: t.call(
                "POST", "/api/2.0/mlflow/model-versions/set-tag", version_body(mv, x + ', "value": "Production"')
            ),
            staged,
        )
    for spelt, text in key_spellings(READ_ONLY).items():
        add(
            f"model-versions/delete-tag {READ_ONLY}, {spelt}",
            version,
            lambda t, mv, x=text: t.call("DELETE", "/api/2.0/mlflow/model-versions/delete-tag", version_body(mv, x)),
            freed,
        )

    # A new version's tags. The object: (model, run) to register from; what is checked is the version made.
    def source(t: Target, given: Any) -> Any:
        if given:
            return given["model"], given["run"], [""]
        return t.model(), t.run(t.experiment()), [""]

    def create(t: Target, made: tuple[str, str, list[str]], text: str) -> requests.Response:
        name, run_id, version = made
        body = f'{{"name": {json.dumps(name)}, "source": "runs:/{run_id}/model", "run_id": "{run_id}", {text}}}'
        answer = t.call("POST", "/api/2.0/mlflow/model-versions/create", body)
        if answer.status_code == 200:
            version[0] = str(answer.json()["model_version"]["version"])
        return answer

    def created_staged(t: Target, made: tuple[str, str, list[str]]) -> bool:
        return bool(made[2][0]) and STAGE in t.version_tags(made[0], made[2][0])

    for spelt, text in item_spellings(STAGE, "Production").items():
        add(f"model-versions/create {STAGE}, {spelt}", source, lambda t, m, x=text: create(t, m, x), created_staged)

    # Where a trace's data lives: the store's. The object: a trace id.
    def trace(t: Target, given: Any) -> Any:
        return t.trace(given["experiment"] if given else t.experiment())

    def moved(t: Target, trace_id: str) -> bool:
        return t.trace_tags(trace_id).get(LOCATION) == ELSEWHERE

    for spelt, text in key_spellings(LOCATION).items():
        for version_number in ("2.0", "3.0"):
            add(
                f"traces/tags (v{version_number[0]}), {spelt}",
                trace,
                lambda t, i, x=text, v=version_number: t.call(
                    "PATCH", f"/api/{v}/mlflow/traces/{i}/tags", f'{{{x}, "value": "{ELSEWHERE}"}}'
                ),
                moved,
            )

    # A trace started with the tag. The object: the experiment, and the trace id once made.
    def started_in(t: Target, given: Any) -> Any:
        return [given["experiment"] if given else t.experiment(), ""]

    def start_v3(t: Target, made: list[str], tags: str) -> requests.Response:
        made[1] = f"tr-{uuid.uuid4().hex}"
        info = json.dumps(_trace_info(made[1], made[0]))[:-1] + f', "tags": {tags}}}'
        return t.call("POST", "/api/3.0/mlflow/traces", f'{{"trace": {{"trace_info": {info}}}}}')

    def start_v2(t: Target, made: list[str], text: str) -> requests.Response:
        answer = t.call(
            "POST", "/api/2.0/mlflow/traces", f'{{"experiment_id": "{made[0]}", "timestamp_ms": 1, {text}}}'
        )
        if answer.status_code == 200:
            made[1] = answer.json()["trace_info"]["request_id"]
        return answer

    def started_moved(t: Target, made: list[str]) -> bool:
        return (
            bool(made[1])
            and t.call("GET", f"/api/3.0/mlflow/traces/{made[1]}").status_code == 200
            and moved(t, made[1])
        )

    for spelt, text in map_spellings(LOCATION, ELSEWHERE).items():
        add(f"traces start (v3) tags, {spelt}", started_in, lambda t, m, x=text: start_v3(t, m, x), started_moved)
    for spelt, text in item_spellings(LOCATION, ELSEWHERE).items():
        add(f"traces start (v2) tags, {spelt}", started_in, lambda t, m, x=text: start_v2(t, m, x), started_moved)

    def otlp(t: Target, made: list[str], attribute: str) -> requests.Response:
        export = ExportTraceServiceRequest()
        span = export.resource_spans.add().scope_spans.add().spans.add()
        hex_id = uuid.uuid4().hex
        span.trace_id, span.span_id, span.name = bytes.fromhex(hex_id), b"\x02" * 8, "root"
        span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_001_000_000_000
        span.attributes.add(key=attribute, value=AnyValue(string_value=ELSEWHERE))
        made[1] = f"tr-{hex_id}"
        headers = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": made[0]}
        return t.call("POST", "/v1/traces", export.SerializeToString(), **headers)

    for spelt, key in {
        "as written": LOCATION,
        "upper case": LOCATION.upper(),
        "before a space": LOCATION + " ",
        "after a space": " " + LOCATION,
        "fullwidth first letter": chr(ord(LOCATION[0]) + 0xFEE0) + LOCATION[1:],
        "prefix in upper case": "MLFLOW.TRACETAG." + LOCATION,
    }.items():
        attribute = key if spelt.startswith("prefix") else "mlflow.traceTag." + key
        add(f"OTLP span attribute, {spelt}", started_in, lambda t, m, a=attribute: otlp(t, m, a), started_moved)

    # A run's property: add-only. The object: a run holding it with the value "1".
    def property_run(t: Target, given: Any) -> Any:
        return given["run"](t) if given else t.run(t.experiment(), {PROPERTY: "1"})

    def rewritten(t: Target, run_id: str) -> bool:
        return t.run_tags(run_id).get(PROPERTY) != "1"

    for spelt, text in key_spellings(PROPERTY).items():
        add(
            f"runs/set-tag property, {spelt}",
            property_run,
            lambda t, r, x=text: t.call(
                "POST", "/api/2.0/mlflow/runs/set-tag", f'{{"run_id": "{r}", {x}, "value": "2"}}'
            ),
            rewritten,
        )
        add(
            f"runs/delete-tag property, {spelt}",
            property_run,
            lambda t, r, x=text: t.call("POST", "/api/2.0/mlflow/runs/delete-tag", f'{{"run_id": "{r}", {x}}}'),
            rewritten,
        )
    for spelt, text in item_spellings(PROPERTY, "2").items():
        add(
            f"runs/log-batch property, {spelt}",
            property_run,
            lambda t, r, x=text: t.call("POST", "/api/2.0/mlflow/runs/log-batch", f'{{"run_id": "{r}", {x}}}'),
            rewritten,
        )
    found += provenance_cases()
    return found


def _some(spellings: dict[str, str]) -> dict[str, str]:
    return {spelt: text for spelt, text in spellings.items() if spelt.endswith(SOME)}


def provenance_cases() -> list[Case]:
    """The dual-tracking relay's provenance tags, by every route that sets or deletes a tag of the objects it copies:
    each set-tag route in every spelling, the others in `SOME`. Prepared on the store with a fresh object; through
    the gateway on one of the caller's own (`given["provenance"]`), which the store is then given the key of where a
    deletion is tried (`given["plant"]`)."""
    found: list[Case] = []

    def add(name: str, prepare: Callable[[Target, Any], Any], send: Any, changed: Any) -> None:
        found.append(Case(f"{PROVENANCE} {name}", prepare, send, changed))

    def experiment_of(t: Target, given: Any) -> str:
        return str(given["experiment"]) if given else t.experiment()

    # Runs: set-tag (every spelling), log-batch, delete-tag, and a run created with the tag.
    def run(t: Target, given: Any) -> Any:
        return t.run(experiment_of(t, given))

    def run_holding(t: Target, given: Any) -> Any:
        if given:
            run_id = t.run(experiment_of(t, given))
            given["plant"]("runs/set-tag", {"run_id": run_id, "key": SOURCE_RUN, "value": "1"})
            return run_id
        return t.run(t.experiment(), {SOURCE_RUN: "1"})

    def run_tagged(t: Target, run_id: str) -> bool:
        return t.run_tags(run_id).get(SOURCE_RUN) == "1"

    for spelt, text in key_spellings(SOURCE_RUN).items():
        add(
            f"runs/set-tag, {spelt}",
            run,
            lambda t, r, x=text: t.call(
                "POST", "/api/2.0/mlflow/runs/set-tag", f'{{"run_id": "{r}", {x}, "value": "1"}}'
            ),
            run_tagged,
        )
    for spelt, text in _some(item_spellings(SOURCE_RUN, "1")).items():
        add(
            f"runs/log-batch, {spelt}",
            run,
            lambda t, r, x=text: t.call("POST", "/api/2.0/mlflow/runs/log-batch", f'{{"run_id": "{r}", {x}}}'),
            run_tagged,
        )
    for spelt, text in _some(key_spellings(SOURCE_RUN)).items():
        add(
            f"runs/delete-tag, {spelt}",
            run_holding,
            lambda t, r, x=text: t.call("POST", "/api/2.0/mlflow/runs/delete-tag", f'{{"run_id": "{r}", {x}}}'),
            lambda t, r: SOURCE_RUN not in t.run_tags(r),
        )

    def run_create(t: Target, made: list[str], text: str) -> requests.Response:
        answer = t.call("POST", "/api/2.0/mlflow/runs/create", f'{{"experiment_id": "{made[0]}", {text}}}')
        if answer.status_code == 200:
            made[1] = str(answer.json()["run"]["info"]["run_id"])
        return answer

    for spelt, text in _some(item_spellings(SOURCE_WORKSPACE, "team-b")).items():
        add(
            f"runs/create, {spelt}",
            lambda t, given: [experiment_of(t, given), ""],
            lambda t, m, x=text: run_create(t, m, x),
            lambda t, m: bool(m[1]) and t.run_tags(m[1]).get(SOURCE_WORKSPACE) == "team-b",
        )

    # Experiments: set-experiment-tag (every spelling), delete-experiment-tag, and one created with the tag.
    def experiment_holding(t: Target, given: Any) -> Any:
        experiment_id = t.experiment()
        body = {"experiment_id": experiment_id, "key": SOURCE_EXPERIMENT, "value": "1"}
        if given:
            given["plant"]("experiments/set-experiment-tag", body)
        else:
            t.ok("POST", "/api/2.0/mlflow/experiments/set-experiment-tag", body)
        return experiment_id

    for spelt, text in key_spellings(SOURCE_EXPERIMENT).items():
        add(
            f"experiments/set-experiment-tag, {spelt}",
            lambda t, given: t.experiment(),
            lambda t, e, x=text: t.call(
                "POST",
                "/api/2.0/mlflow/experiments/set-experiment-tag",
                f'{{"experiment_id": "{e}", {x}, "value": "1"}}',
            ),
            lambda t, e: t.experiment_tags(e).get(SOURCE_EXPERIMENT) == "1",
        )
    for spelt, text in _some(key_spellings(SOURCE_EXPERIMENT)).items():
        add(
            f"experiments/delete-experiment-tag, {spelt}",
            experiment_holding,
            lambda t, e, x=text: t.call(
                "POST", "/api/2.0/mlflow/experiments/delete-experiment-tag", f'{{"experiment_id": "{e}", {x}}}'
            ),
            lambda t, e: SOURCE_EXPERIMENT not in t.experiment_tags(e),
        )

    def experiment_create(t: Target, made: list[str], text: str) -> requests.Response:
        body = f'{{"name": {json.dumps(unique("provenance"))}, {text}}}'
        answer = t.call("POST", "/api/2.0/mlflow/experiments/create", body)
        if answer.status_code == 200:
            made[0] = str(answer.json()["experiment_id"])
        return answer

    for spelt, text in _some(item_spellings(SOURCE_EXPERIMENT, "1")).items():
        add(
            f"experiments/create, {spelt}",
            lambda t, given: [""],
            lambda t, m, x=text: experiment_create(t, m, x),
            lambda t, m: bool(m[0]) and t.experiment_tags(m[0]).get(SOURCE_EXPERIMENT) == "1",
        )

    # Logged models: their tags set (PATCH), deleted by the key in the path, and a model created with the tag.
    def logged_model_tagged(t: Target, model_id: str) -> bool:
        return t.logged_model_tags(model_id).get(SOURCE_MODEL) == "m-1"

    for spelt, text in _some(item_spellings(SOURCE_MODEL, "m-1")).items():
        add(
            f"logged-models tags, {spelt}",
            lambda t, given: t.logged_model(experiment_of(t, given)),
            lambda t, m, x=text: t.call("PATCH", f"/api/2.0/mlflow/logged-models/{m}/tags", f"{{{x}}}"),
            logged_model_tagged,
        )

    def logged_model_holding(t: Target, given: Any) -> Any:
        if given:
            model_id = t.logged_model(experiment_of(t, given))
            given["plant"](f"logged-models/{model_id}/tags", {"tags": [{"key": SOURCE_MODEL, "value": "m-1"}]}, "PATCH")
            return model_id
        return t.logged_model(t.experiment(), {SOURCE_MODEL: "m-1"})

    for spelt, key in {
        "as written": SOURCE_MODEL,
        "upper case": SOURCE_MODEL.upper(),
        "before a space": SOURCE_MODEL + " ",
        "fullwidth first letter": chr(ord(SOURCE_MODEL[0]) + 0xFEE0) + SOURCE_MODEL[1:],
    }.items():
        add(
            f"logged-models delete tag, {spelt}",
            logged_model_holding,
            lambda t, m, k=key: t.call("DELETE", f"/api/2.0/mlflow/logged-models/{m}/tags/{_quoted(k)}"),
            lambda t, m: SOURCE_MODEL not in t.logged_model_tags(m),
        )

    def logged_model_create(t: Target, made: list[str], text: str) -> requests.Response:
        answer = t.call("POST", "/api/2.0/mlflow/logged-models", f'{{"experiment_id": "{made[0]}", {text}}}')
        if answer.status_code == 200:
            made[1] = str(answer.json()["model"]["info"]["model_id"])
        return answer

    for spelt, text in _some(item_spellings(SOURCE_MODEL, "m-1")).items():
        add(
            f"logged-models create, {spelt}",
            lambda t, given: [experiment_of(t, given), ""],
            lambda t, m, x=text: logged_model_create(t, m, x),
            lambda t, m: bool(m[1]) and logged_model_tagged(t, m[1]),
        )

    # Model versions: set-tag (every spelling), delete-tag, and a version created with the tag.
    def model_version(t: Target, given: Any) -> Any:
        name = t.model()
        return name, t.version(name, t.run(experiment_of(t, given)))

    def version_holding(t: Target, given: Any) -> Any:
        name = t.model()
        run_id = t.run(experiment_of(t, given))
        if not given:
            return name, t.version(name, run_id, {SOURCE_VERSION: "7"})
        version = t.version(name, run_id)
        given["plant"](
            "model-versions/set-tag", {"name": name, "version": version, "key": SOURCE_VERSION, "value": "7"}
        )
        return name, version

    def versioned(t: Target, mv: tuple[str, str]) -> bool:
        return t.version_tags(*mv).get(SOURCE_VERSION) == "7"

    def version_body(mv: tuple[str, str], extra: str) -> str:
        return f'{{"name": {json.dumps(mv[0])}, "version": "{mv[1]}", {extra}}}'

    for spelt, text in key_spellings(SOURCE_VERSION).items():
        add(
            f"model-versions/set-tag, {spelt}",
            model_version,
            lambda t, mv, x=text: t.call(
                "POST", "/api/2.0/mlflow/model-versions/set-tag", version_body(mv, x + ', "value": "7"')
            ),
            versioned,
        )
    for spelt, text in _some(key_spellings(SOURCE_VERSION)).items():
        add(
            f"model-versions/delete-tag, {spelt}",
            version_holding,
            lambda t, mv, x=text: t.call("DELETE", "/api/2.0/mlflow/model-versions/delete-tag", version_body(mv, x)),
            lambda t, mv: SOURCE_VERSION not in t.version_tags(*mv),
        )

    def version_create(t: Target, made: list[str], text: str) -> requests.Response:
        name, run_id = made[0], made[1]
        body = f'{{"name": {json.dumps(name)}, "source": "runs:/{run_id}/model", "run_id": "{run_id}", {text}}}'
        answer = t.call("POST", "/api/2.0/mlflow/model-versions/create", body)
        if answer.status_code == 200:
            made[2] = str(answer.json()["model_version"]["version"])
        return answer

    for spelt, text in _some(item_spellings(SOURCE_VERSION, "7")).items():
        add(
            f"model-versions/create, {spelt}",
            lambda t, given: [t.model(), t.run(experiment_of(t, given)), ""],
            lambda t, m, x=text: version_create(t, m, x),
            lambda t, m: bool(m[2]) and versioned(t, (m[0], m[2])),
        )

    # Registered models: set-tag, delete-tag, and one created with the tag.
    def model_tagged(t: Target, name: str) -> bool:
        return t.model_tags(name).get(SOURCE_WORKSPACE) == "team-b"

    def model_holding(t: Target, given: Any) -> Any:
        if not given:
            return t.model({SOURCE_WORKSPACE: "team-b"})
        name = t.model()
        given["plant"]("registered-models/set-tag", {"name": name, "key": SOURCE_WORKSPACE, "value": "team-b"})
        return name

    for spelt, text in _some(key_spellings(SOURCE_WORKSPACE)).items():
        add(
            f"registered-models/set-tag, {spelt}",
            lambda t, given: t.model(),
            lambda t, n, x=text: t.call(
                "POST",
                "/api/2.0/mlflow/registered-models/set-tag",
                f'{{"name": {json.dumps(n)}, {x}, "value": "team-b"}}',
            ),
            model_tagged,
        )
        add(
            f"registered-models/delete-tag, {spelt}",
            model_holding,
            lambda t, n, x=text: t.call(
                "DELETE", "/api/2.0/mlflow/registered-models/delete-tag", f'{{"name": {json.dumps(n)}, {x}}}'
            ),
            lambda t, n: SOURCE_WORKSPACE not in t.model_tags(n),
        )

    def model_create(t: Target, made: list[str], text: str) -> requests.Response:
        made[0] = unique("provenance")
        return t.call("POST", "/api/2.0/mlflow/registered-models/create", f'{{"name": {json.dumps(made[0])}, {text}}}')

    for spelt, text in _some(item_spellings(SOURCE_WORKSPACE, "team-b")).items():
        add(
            f"registered-models/create, {spelt}",
            lambda t, given: [""],
            lambda t, m, x=text: model_create(t, m, x),
            lambda t, m: (
                t.call("GET", f"/api/2.0/mlflow/registered-models/get?name={_quoted(m[0])}").status_code == 200
                and model_tagged(t, m[0])
            ),
        )
    return found


def _quoted(text: str) -> str:
    return requests.utils.quote(text, safe="")


def test_every_spelling_the_store_reads_as_a_reserved_tag_key_is_refused(stack: Stack) -> None:
    store = Target(stack.stores["a"].url, requests.Session())
    admin = Admin.of(stack)
    owner = admin.person(f"{unique('owner')}@example.com")
    editor = admin.person(f"{unique('editor')}@example.com")
    for person in (owner, editor):
        admin.grant(f"workspaces/{WORKSPACE}", "CAN_USE", user=person.name)
    owners, editors = Target(stack.url, owner.http(stack)), Target(stack.url, editor.http(stack))
    seen = Target(stack.url, stack.http(WORKSPACE))  # the admin, reading what the gateway's objects hold

    # The gateway's objects. The owner's prompt, which the editor may edit (CAN_EDIT) but not manage.
    prompt = owners.model({PROMPT: "true"})
    model_id = _model_id(stack, owner, prompt)
    admin.grant(f"registered-models/{model_id}", "CAN_EDIT", user=editor.name, workspace=WORKSPACE)
    # The editor's model and the owner's run it reads: a version the editor makes of it is the gateway's
    # fedgate.source_read_only.
    owners_experiment = owners.experiment()
    owners_run = owners.run(owners_experiment)
    admin.grant(f"experiments/{owners_experiment}", "CAN_READ", user=editor.name, workspace=WORKSPACE)
    editors_model = editors.model()
    given = {
        "prompt": prompt,
        "model": editors_model,
        "version": lambda t: t.version(editors_model, owners_run),
        "run": lambda t: t.run(owners_experiment, {PROPERTY: "1"}),
        "experiment": owners_experiment,
    }
    assert READ_ONLY in seen.version_tags(editors_model, editors.version(editors_model, owners_run))
    given_run = {**given, "run": owners_run}

    def plant(path: str, body: dict[str, Any], method: str = "POST") -> None:
        """A tag given to the caller's object on the store itself, around the gateway (as before it refused them)."""
        answer = store.call(method, "/api/2.0/mlflow/" + path, json.dumps(body))
        assert answer.status_code == 200, (path, answer.text)

    given_provenance = {"experiment": owners_experiment, "plant": plant}
    all_cases = cases()

    # 1. What the store reads, each spelling on an object of its own.
    reads: dict[str, bool] = {}
    for case in all_cases:
        made = case.prepare(store, None)
        answer = case.send(store, made)
        if answer.status_code != 200:
            case.notes.append(f"store {answer.status_code}")
        reads[case.name] = answer.status_code == 200 and case.changed(store, made)

    # 2. The gateway's answer, each spelling by the caller it is refused to, on their object; the admin reads it.
    answers: dict[str, int] = {}
    messages: dict[str, str] = {}
    changed: list[str] = []
    for case in all_cases:
        caller = owners if case.name.startswith(("traces", "OTLP", "runs/", PROVENANCE)) else editors
        context = given_run if case.name.startswith("model-versions/create") else given
        context = given_provenance if case.name.startswith(PROVENANCE) else context
        made = case.prepare(caller, context)
        answer = case.send(caller, made)
        answers[case.name] = answer.status_code
        assert answer.status_code < 500, (case.name, answer.text)
        if answer.status_code != 200:
            assert answer.json().get("error_code"), (case.name, answer.text)
            messages[case.name] = f"{answer.json()['error_code']}: {answer.json().get('message', '')}"
        elif case.changed(seen, made):
            changed.append(case.name)
            if case.name.startswith("registered-models"):
                body = {"name": prompt, "key": PROMPT, "value": "true"}
                seen.ok("POST", "/api/2.0/mlflow/registered-models/set-tag", body)

    def row(case: Case) -> str:
        said = ("reads the key" if reads[case.name] else "does not") + "".join(f" ({n})" for n in case.notes)
        return f"{case.name:75} store {said}; gateway {answers[case.name]}"

    table = "\n".join(row(case) for case in all_cases)
    print("\n" + table)
    # The detection works: the plain spellings change the key on the store (which refuses a trace started with it).
    for case in all_cases:
        if case.name.endswith(", as written") and not case.name.startswith("traces start"):
            assert reads[case.name], (case.name, table)
    # A new version is made without the workflow's tags rather than refused.
    refusing = [case for case in all_cases if not case.name.startswith("model-versions/create")]
    leaks = [case.name for case in refusing if reads[case.name] and answers[case.name] < 400]
    assert leaks == [], table
    assert changed == [], table
    # A lone surrogate escape (which the store decodes, and the gateway's decoder cannot hold) is refused in words
    # that say so, not as a truncated body.
    lone = [case.name for case in all_cases if "lone surrogate" in case.name]
    assert lone
    for name in lone:
        assert answers[name] == 400, (name, messages.get(name))
        assert messages[name].startswith("INVALID_PARAMETER_VALUE: "), (name, messages[name])
        assert "contains an unpaired surrogate (\\ud800)" in messages[name], (name, messages[name])


def _model_id(stack: Stack, who: Person, name: str) -> str:
    answer = who.http(stack).get(
        f"{stack.url}/api/2.0/mlflow/databricks/registered-models/get", params={"name": name}, timeout=TIMEOUT
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["registered_model_databricks"]["id"])
