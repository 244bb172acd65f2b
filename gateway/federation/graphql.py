"""The web UI's GraphQL queries: parsed, held to an allow-list, and re-printed before anything is decided.

MLflow's `/graphql` resolves whatever a document asks for, nested fields included (a run's model versions
are a registry search of their own), so a GraphQL body is never forwarded as it came. It is parsed with
graphql-core and accepted only when it is one of the operations the MLflow 3.17.2 UI sends:

- exactly one operation, a query (no mutation, no subscription, no fragments), with at most the UI's
  `@component(name: "...")` directive;
- exactly one root field, one of `ALLOWED`, without an alias, with one argument `input` (a variable or an
  object literal) whose fields are the ones that operation takes, each of its type;
- a selection that stays inside the UI's own selection of that field (`__typename` anywhere), without
  arguments, aliases, directives or fragments: no introspection (`__schema`, `__type`), no field the UI
  never asks for, nothing repeated under another name.

The store receives the gateway's re-print of that operation with its input as one variable,
`{"query": ..., "operationName": ..., "variables": {"input": {...}}}`: the guard decides on exactly the
ids the store will read (guard/graphql.py authorizes each and filters the model versions of the answer).
Anything else answers 400 INVALID_PARAMETER_VALUE and reaches no store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec
from graphql import (
    ArgumentNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    GraphQLError,
    NamedTypeNode,
    NameNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    VariableDefinitionNode,
    VariableNode,
    parse,
    print_ast,
)
from graphql.utilities import value_from_ast_untyped

from gateway.core.errors import InvalidParameter, malformed_json

MAX_QUERY_CHARS = 20_000
OPERATION_NAME_RE = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,99}\Z")
TYPENAME = "__typename"
COMPONENT = "component"

_RUN_SELECTION = """
  info { runName status runUuid experimentId artifactUri endTime lifecycleStage startTime userId }
  experiment { experimentId name tags { key value } artifactLocation lifecycleStage lastUpdateTime }
  modelVersions { status version name source creationTimestamp }
  data { metrics { key value step timestamp } params { key value } tags { key value } }
  inputs {
    datasetInputs { dataset { digest name profile schema source sourceType } tags { key value } }
    modelInputs { modelId }
  }
  outputs { modelOutputs { modelId step } }
"""
_API_ERROR = "apiError { helpUrl code message }"

# What each allowed root field may select: the union of what the UI's queries select (GetRun, SearchRuns,
# MlflowGetExperimentQuery, GetMetricHistoryBulkInterval in the MLflow 3.17.2 build).
_SELECTIONS = {
    "mlflowGetRun": f"{{ {_API_ERROR} run {{ {_RUN_SELECTION} }} }}",
    "mlflowSearchRuns": f"{{ {_API_ERROR} runs {{ {_RUN_SELECTION} }} nextPageToken }}",
    "mlflowGetExperiment": f"""{{ {_API_ERROR} experiment {{
        artifactLocation creationTime effectiveTraceArchivalRetention experimentId lastUpdateTime
        lifecycleStage name tags {{ key value }} }} }}""",
    "mlflowGetMetricHistoryBulkInterval": f"{{ {_API_ERROR} metrics {{ timestamp step runId key value }} }}",
}

_STRING, _STRINGS, _INT = "string", "strings", "int"


@dataclass(frozen=True, slots=True)
class Allowed:
    input_type: str  # the GraphQL type of the `input` argument in MLflow's schema
    fields: dict[str, str]  # input field → its kind


ALLOWED: dict[str, Allowed] = {
    "mlflowGetRun": Allowed("MlflowGetRunInput", {"runId": _STRING, "runUuid": _STRING}),
    "mlflowSearchRuns": Allowed(
        "MlflowSearchRunsInput",
        {
            "experimentIds": _STRINGS,
            "filter": _STRING,
            "runViewType": _STRING,
            "maxResults": _INT,
            "orderBy": _STRINGS,
            "pageToken": _STRING,
        },
    ),
    "mlflowGetExperiment": Allowed("MlflowGetExperimentInput", {"experimentId": _STRING}),
    "mlflowGetMetricHistoryBulkInterval": Allowed(
        "MlflowGetMetricHistoryBulkIntervalInput",
        {"runIds": _STRINGS, "metricKey": _STRING, "startStep": _INT, "endStep": _INT, "maxResults": _INT},
    ),
}
VIEW_TYPES = frozenset({"ACTIVE_ONLY", "DELETED_ONLY", "ALL"})
MAX_LIST = 1000

Tree = dict[str, "Tree"]


def _tree(selection: SelectionSetNode | None) -> Tree:
    if selection is None:
        return {}
    return {node.name.value: _tree(node.selection_set) for node in selection.selections if isinstance(node, FieldNode)}


def _allowed_tree(text: str) -> Tree:
    operation = parse(f"query Q {{ field {text} }}", no_location=True).definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    field = operation.selection_set.selections[0]
    assert isinstance(field, FieldNode)
    return _tree(field.selection_set)


ALLOWED_SELECTIONS: dict[str, Tree] = {name: _allowed_tree(text) for name, text in _SELECTIONS.items()}


@dataclass(frozen=True, slots=True)
class GraphqlCall:
    """One allowed operation: its root field and its input, exactly as the store will receive them."""

    field: str
    input: dict[str, Any]
    operation_name: str | None
    query: str  # the re-printed document

    def body(self, input: dict[str, Any] | None = None) -> bytes:
        """The request the store receives (with `input` in place of the call's own, for a narrowed search)."""
        document: dict[str, Any] = {
            "query": self.query,
            "variables": {"input": self.input if input is None else input},
        }
        if self.operation_name is not None:
            document["operationName"] = self.operation_name
        return msgspec.json.encode(document)


def refused(reason: str) -> InvalidParameter:
    return InvalidParameter(f"GraphQL: {reason} (only the MLflow UI's own queries are served).")


def canonical_graphql(raw: bytes) -> GraphqlCall:
    """The one allowed operation of a GraphQL request body, re-printed; InvalidParameter for anything else."""
    try:
        request = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise malformed_json(raw, exc) from None
    if type(request) is not dict:
        raise refused("the body must be one JSON object (batched queries are not served)")
    unknown = set(request) - {"query", "variables", "operationName", "extensions"}
    if unknown:
        raise refused(f"unknown member {min(unknown)!r} in the request")
    query, variables = request.get("query"), request.get("variables")
    operation_name = request.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise refused("the request has no query")
    if len(query) > MAX_QUERY_CHARS:
        raise refused(f"the query is longer than {MAX_QUERY_CHARS} characters")
    if variables is None:
        variables = {}
    if type(variables) is not dict:
        raise refused("'variables' must be an object")
    if operation_name is not None and (
        not isinstance(operation_name, str) or not OPERATION_NAME_RE.match(operation_name)
    ):
        raise refused("'operationName' must be a GraphQL name")
    try:
        document = parse(query, no_location=True, max_tokens=5000)
    except GraphQLError as exc:
        raise refused(f"the query does not parse: {exc.message}") from None
    operation = _one_query(document, operation_name)
    if operation_name is None and operation.name is not None:
        operation_name = operation.name.value
    field = _root_field(operation)
    allowed = ALLOWED[field.name.value]
    _check_selection(field.selection_set, ALLOWED_SELECTIONS[field.name.value], field.name.value)
    value = _input_value(field, operation, variables)
    checked = _checked_input(value, allowed)
    return GraphqlCall(field.name.value, checked, operation_name, _reprinted(operation, field, allowed))


def _one_query(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode:
    if len(document.definitions) != 1 or not isinstance(document.definitions[0], OperationDefinitionNode):
        raise refused("the document must hold exactly one operation and no fragments")
    operation = document.definitions[0]
    if operation.operation is not OperationType.QUERY:
        raise refused(f"{operation.operation.value} operations are not served")
    name = operation.name.value if operation.name is not None else None
    if operation_name is not None and name != operation_name:
        raise refused("'operationName' does not name the document's operation")
    for directive in operation.directives or ():
        _component(directive)
    return operation


def _component(directive: DirectiveNode) -> None:
    """The UI's `@component(name: "...")`, with one string literal, is the only directive served."""
    arguments = directive.arguments or ()
    if (
        directive.name.value != COMPONENT
        or len(arguments) != 1
        or arguments[0].name.value != "name"
        or not isinstance(arguments[0].value, StringValueNode)
    ):
        raise refused(f"the directive @{directive.name.value} is not served")


def _root_field(operation: OperationDefinitionNode) -> FieldNode:
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        raise refused("a query must select exactly one root field")
    field = selections[0]
    name = field.name.value
    if name not in ALLOWED:
        raise refused(f"the root field {name!r} is not served")
    if field.alias is not None or field.directives:
        raise refused("the root field may carry no alias and no directive")
    arguments = field.arguments or ()
    if len(arguments) != 1 or arguments[0].name.value != "input":
        raise refused(f"{name} takes exactly one argument, 'input'")
    return field


def _check_selection(selection: SelectionSetNode | None, allowed: Tree, where: str) -> None:
    if selection is None:
        if allowed:
            raise refused(f"{where} needs a selection")
        return
    if not allowed:
        raise refused(f"{where} takes no selection")
    seen: set[str] = set()
    for node in selection.selections:
        if not isinstance(node, FieldNode):
            raise refused(f"fragments are not served (in {where})")
        name = node.name.value
        if node.alias is not None or node.arguments or node.directives:
            raise refused(f"{where}.{name} may carry no alias, argument or directive")
        if name in seen:
            raise refused(f"{where}.{name} is selected twice")
        seen.add(name)
        if name == TYPENAME and node.selection_set is None:
            continue
        if name not in allowed:
            raise refused(f"the field {where}.{name} is not served")
        _check_selection(node.selection_set, allowed[name], f"{where}.{name}")


def _input_value(field: FieldNode, operation: OperationDefinitionNode, variables: dict[str, Any]) -> Any:
    argument: ArgumentNode = (field.arguments or ())[0]
    definitions = {d.variable.name.value: d for d in operation.variable_definitions or ()}
    if isinstance(argument.value, VariableNode):
        name = argument.value.name.value
        if set(definitions) != {name}:
            raise refused("the operation must define exactly the one variable its input uses")
        if definitions[name].default_value is not None or definitions[name].directives:
            raise refused("the input variable may carry no default value and no directive")
        return variables.get(name)
    if definitions:
        raise refused("the operation defines variables it does not use")
    return value_from_ast_untyped(argument.value, {})


def _checked_input(value: Any, allowed: Allowed) -> dict[str, Any]:
    if type(value) is not dict:
        raise refused("'input' must be an object")
    checked: dict[str, Any] = {}
    for key, item in value.items():
        kind = allowed.fields.get(key)
        if kind is None:
            raise refused(f"the input field {key!r} is not served")
        if item is None:
            continue
        if (kind == _STRING and isinstance(item, str)) or (kind == _INT and type(item) is int and abs(item) < 2**31):
            checked[key] = item
        elif kind == _STRINGS and isinstance(item, str):
            checked[key] = [item]  # GraphQL's input coercion: one value where a list is expected
        elif (
            kind == _STRINGS and type(item) is list and len(item) <= MAX_LIST and all(isinstance(v, str) for v in item)
        ):
            checked[key] = list(item)
        else:
            raise refused(f"the input field {key!r} has a value of the wrong type")
    if "runViewType" in checked and checked["runViewType"] not in VIEW_TYPES:
        raise refused("runViewType must be ACTIVE_ONLY, DELETED_ONLY or ALL")
    return checked


def _reprinted(operation: OperationDefinitionNode, field: FieldNode, allowed: Allowed) -> str:
    """The operation as the store receives it: its name and directive, `input` as the one variable `$input`."""
    variable = VariableNode(name=NameNode(value="input"))
    definition = VariableDefinitionNode(
        variable=variable,
        type=NonNullTypeNode(type=NamedTypeNode(name=NameNode(value=allowed.input_type))),
        directives=(),
    )
    root = FieldNode(
        name=field.name,
        arguments=(ArgumentNode(name=NameNode(value="input"), value=variable),),
        directives=(),
        selection_set=field.selection_set,
    )
    rebuilt = OperationDefinitionNode(
        operation=OperationType.QUERY,
        name=operation.name,
        variable_definitions=(definition,),
        directives=operation.directives or (),
        selection_set=SelectionSetNode(selections=(root,)),
    )
    return print_ast(DocumentNode(definitions=(rebuilt,)))
