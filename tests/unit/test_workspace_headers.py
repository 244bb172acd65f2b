"""The one workspace-header rule (gateway/core/workspace_headers.py): whatever bytes the two headers carry, a
request is refused or it resolves exactly the workspace the id names (and the name, when both are sent)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.core.errors import GatewayError, InvalidParameter, InvalidState, ResourceNotFound
from gateway.core.links import LinkTable, Namespace, WorkspaceLink
from gateway.core.workspace_headers import ID_HEADER, NAME_HEADER, WorkspaceHeaders, read_workspace_headers


def link(name: str, workspace_id: int, **kw: object) -> WorkspaceLink:
    return WorkspaceLink(name, workspace_id, "workspace", "s", "s", name, **kw)  # type: ignore[arg-type]


SHARED = Namespace("http://shared", None)
LINKS = [link("default", 1000), link("team-a", 1001), link("team-b", 1002), link("big", 999_999_999_999_999_999)]
WITHHELD = [link("clash-1", 1005, namespaces=(SHARED,)), link("clash-2", 1006, namespaces=(SHARED,))]
HIDDEN = {"team-b"}  # the caller may not see this one
TABLE = LinkTable()
TABLE.replace(LINKS + WITHHELD)


def named(name: str) -> WorkspaceLink:
    found = TABLE.get(name)
    if found is None:
        raise ResourceNotFound(f"Workspace '{name}' not found")
    return found


def sees(found: WorkspaceLink) -> bool:
    return found.name not in HIDDEN


def resolve(raw: list[tuple[bytes, bytes]]) -> WorkspaceLink | None:
    headers, _ = read_workspace_headers(raw)
    return headers.link(TABLE, named, sees)


ids = st.one_of(
    st.sampled_from([b"1001", b"1002", b" 1001\t", b"01001", b"1000", b"1005", b"999999999999999999"]),
    st.integers(min_value=0, max_value=10**20).map(lambda n: str(n).encode()),
    st.binary(max_size=24),
    st.text(max_size=8).map(lambda t: t.encode("utf-8")),
)
names = st.one_of(
    st.sampled_from([b"team-a", b"team-b", b"default", b"account", b"clash-1", b"", b"Team-A"]),
    st.binary(max_size=12),
)
other = st.tuples(st.sampled_from([b"content-type", b"user-agent", b"x-other"]), st.binary(max_size=8))
header_lists = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([ID_HEADER.encode(), b"X-Databricks-Workspace-Id"]), ids),
        st.tuples(st.sampled_from([NAME_HEADER.encode(), b"X-MLFLOW-WORKSPACE"]), names),
        other,
    ),
    max_size=5,
)


@settings(max_examples=600, deadline=None)
@given(header_lists)
@example([(b"x-databricks-workspace-id", "²".encode("latin-1"))])  # a digit to str.isdigit, not to int()
@example([(b"x-databricks-workspace-id", "\u0661\u0660\u0660\u0661".encode())])  # Arabic-Indic digits
@example([(b"x-databricks-workspace-id", b"1001"), (b"x-databricks-workspace-id", b"1001")])
@example([(b"x-databricks-workspace-id", b"1001\n")])
def test_a_request_is_refused_or_resolves_exactly_the_workspace_its_headers_name(
    raw: list[tuple[bytes, bytes]],
) -> None:
    id_values = [v for k, v in raw if k.lower() == ID_HEADER.encode()]
    name_values = [v for k, v in raw if k.lower() == NAME_HEADER.encode()]
    try:
        found = resolve(raw)
    except GatewayError as refused:
        assert refused.status in (400, 404, 409), refused
        assert isinstance(refused, InvalidParameter | ResourceNotFound | InvalidState)
        return
    assert len(id_values) <= 1 and len(name_values) <= 1
    name = name_values[0].decode("latin-1") if name_values and name_values[0] else None
    if id_values:
        text = id_values[0].decode("latin-1")
        assert text.strip(" \t").isascii() and text.strip(" \t").isdigit()
        assert found is not None and found.workspace_id == int(text)
        assert name is None or found.name == name
    elif name is not None:
        assert found is not None and found.name == name
    else:
        assert found is None
    assert found is None or found.name not in HIDDEN


@given(header_lists)
def test_only_the_headers_asked_for_are_kept_never_the_workspace_headers(raw: list[tuple[bytes, bytes]]) -> None:
    keep = {"content-type", "user-agent", NAME_HEADER, ID_HEADER}
    try:
        _, kept = read_workspace_headers(raw, keep)
    except InvalidParameter:
        return
    assert {k for k, _ in kept} <= {"content-type", "user-agent"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b"1001", 1001), (b" 1002 ", 1002), (b"\t1001", 1001), (b"0001001", 1001), (b"999999999999999999", None)],
)
def test_an_id_is_decimal_digits_with_blanks_around(value: bytes, expected: int | None) -> None:
    headers, _ = read_workspace_headers([(ID_HEADER.encode(), value)])
    assert headers.workspace_id == (expected if expected is not None else int(value))


@pytest.mark.parametrize(
    "value", [b"", b" ", b"-1001", b"+1001", b"1001.0", b"1e3", b"0x3e9", b"1001,1002", b"1_001", b"1" * 19, b"\xb2"]
)
def test_anything_else_is_not_an_id(value: bytes) -> None:
    with pytest.raises(InvalidParameter, match="numeric id"):
        read_workspace_headers([(ID_HEADER.encode(), value)])


@pytest.mark.parametrize("header", [ID_HEADER, NAME_HEADER])
def test_each_header_may_be_sent_once(header: str) -> None:
    value = b"1001" if header == ID_HEADER else b"team-a"
    with pytest.raises(InvalidParameter, match="more than once"):
        read_workspace_headers([(header.encode(), value), (b"x-other", b""), (header.upper().encode(), value)])


def test_unknown_and_hidden_ids_answer_alike_and_withheld_ones_409() -> None:
    with pytest.raises(ResourceNotFound) as unknown:
        WorkspaceHeaders(workspace_id=4242).link(TABLE, named, sees)
    with pytest.raises(ResourceNotFound) as unseen:
        WorkspaceHeaders(workspace_id=1002).link(TABLE, named, sees)
    assert (unknown.value.status, unknown.value.error_code) == (unseen.value.status, unseen.value.error_code)
    assert unknown.value.message.replace("4242", "N") == unseen.value.message.replace("1002", "N")
    assert unseen.value.denied and not unknown.value.denied
    with pytest.raises(InvalidState):
        WorkspaceHeaders(workspace_id=1005).link(TABLE, named, sees)
    with pytest.raises(InvalidState):
        WorkspaceHeaders(name="clash-2").link(TABLE, named, sees)


def test_a_scope_named_with_an_id_disagrees() -> None:
    scopes = {"account": "the account scope"}
    assert WorkspaceHeaders(name="account").scope(scopes) == "the account scope"
    assert WorkspaceHeaders(name="team-a", workspace_id=1001).scope(scopes) is None
    with pytest.raises(InvalidParameter, match="names the 'account' scope"):
        WorkspaceHeaders(name="account", workspace_id=1001).scope(scopes)
