"""No two workspaces resolve to one store namespace; failover reads keep to the workspace's own central copies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.core.config import ConfigError, load_settings
from gateway.core.errors import InvalidState, ResourceNotFound
from gateway.core.links import LinkTable, Namespace, WorkspaceLink, store_identity
from gateway.core.route_table import FORWARDED_ROUTES
from gateway.dual.failover import Failover, _keep_own

STORES = """
[account]
id = "7001"
[stores.a]
url = "http://127.0.0.1:5001"
[stores.b]
url = "http://127.0.0.1:5002"
[stores.central]
url = "http://127.0.0.1:5003"
workspaces = {central_workspaces}
[central]
store = "central"
"""


def settings_for(tmp_path: Path, workspaces: str, *, central_workspaces: bool = False, extra: str = "") -> Any:
    path = tmp_path / "fedgate.toml"
    path.write_text(STORES.format(central_workspaces=str(central_workspaces).lower()) + extra + workspaces)
    return load_settings(path, environ={})


def declared(*entries: tuple[str, str, str, str]) -> str:
    """[[workspaces]] blocks of (name, id, mode, store or "store + upstream")."""
    blocks = []
    for name, ws_id, mode, store in entries:
        store_name, _, upstream = store.partition("+")
        block = f'[[workspaces]]\nname = "{name}"\nid = "{ws_id}"\nmode = "{mode}"\n'
        block += f'store = "{store_name}"\n' if store_name else ""
        block += f'upstream_workspace = "{upstream}"\n' if upstream else ""
        blocks.append(block)
    return "\n".join(blocks)


# -- configuration: declared conflicts stop start-up, naming both workspaces ----------------------------


def test_two_declared_workspaces_on_one_store_without_workspaces_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'north' and 'south' share one store namespace \(store 'a'\)"):
        settings_for(tmp_path, declared(("north", "1", "workspace", "a"), ("south", "2", "workspace", "a")))


def test_an_upstream_workspace_does_not_separate_links_on_a_store_without_workspaces(tmp_path: Path) -> None:
    # Without workspaces on the store, X-MLFLOW-WORKSPACE is never sent: both would read one namespace.
    with pytest.raises(ConfigError, match="'north' and 'south'"):
        settings_for(tmp_path, declared(("north", "1", "workspace", "a+n"), ("south", "2", "workspace", "a+s")))


def test_two_store_entries_with_one_url_are_one_store(tmp_path: Path) -> None:
    alias = '[stores.a-again]\nurl = "http://127.0.0.1:5001/"\n'
    with pytest.raises(ConfigError, match="'north' and 'south'"):
        settings_for(
            tmp_path, declared(("north", "1", "workspace", "a"), ("south", "2", "workspace", "a-again")), extra=alias
        )


def test_central_mode_needs_a_central_store_with_workspaces(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workspaces\[0\]\.mode: 'central' needs a central store with workspaces"):
        settings_for(tmp_path, declared(("research", "1", "central", "")))
    settings = settings_for(
        tmp_path,
        declared(("research", "1", "central", ""), ("lab", "2", "central", "")),
        central_workspaces=True,
    )
    assert [ws.name for ws in settings.workspaces] == ["research", "lab"]


def test_a_central_workspace_named_like_a_dual_workspaces_copies_is_refused(tmp_path: Path) -> None:
    # Dual `lab` keeps its copies in workspace `lab` of the central store; `other` would read them.
    with pytest.raises(ConfigError, match=r"'lab' and 'other'.*workspace 'lab' of store 'central'"):
        settings_for(
            tmp_path,
            declared(("lab", "1", "dual", "a"), ("other", "2", "central", "+lab")),
            central_workspaces=True,
        )


def test_a_link_to_the_whole_central_store_overlaps_the_dual_prefixes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'lab' and 'plain'.*store 'central'"):
        settings_for(tmp_path, declared(("lab", "1", "dual", "a"), ("plain", "2", "workspace", "central")))
    # Two dual workspaces: prefixes `lab/` and `lab-2/` do not overlap.
    settings_for(tmp_path, declared(("lab", "1", "dual", "a"), ("lab-2", "2", "dual", "b")))


def test_a_dual_workspace_whose_store_is_the_central_one_under_another_name_is_refused(tmp_path: Path) -> None:
    alias = '[stores.central-again]\nurl = "http://127.0.0.1:5003"\n'
    with pytest.raises(ConfigError, match="own data and its central copies in one namespace"):
        settings_for(tmp_path, declared(("lab", "1", "dual", "central-again")), extra=alias)


# -- the live table: overlapping links (an old database) are withheld, with a 409 naming the other -----


def link(name: str, workspace_id: int, store: str, workspace: str | None = None) -> WorkspaceLink:
    space = Namespace(store_identity(f"http://{store}:5000"), workspace, label=store)
    return WorkspaceLink(name, workspace_id, "workspace", store, store, workspace, namespaces=(space,))


def test_overlapping_links_are_both_withheld_and_answer_409() -> None:
    table = LinkTable()
    table.replace([link("north", 1, "a"), link("south", 2, "a"), link("east", 3, "b")])
    assert [x.name for x in table.all()] == ["east"]
    assert table.get("north") is None and table.by_id(2) is None
    with pytest.raises(InvalidState) as refused:
        table.refuse_withheld("north")
    assert refused.value.status == 409 and refused.value.error_code == "INVALID_STATE"
    assert "'north' and workspace 'south' share one store namespace" in refused.value.message
    assert [x.name for x, _ in table.withheld()] == ["north", "south"]
    table.refuse_withheld("east")  # served
    table.replace([link("north", 1, "a"), link("south", 2, "a", "s")])  # relinked elsewhere: both served
    assert [x.name for x in table.all()] == ["north", "south"]


# -- failover: filters translated and narrowed, answers kept to the workspace's copies ----------------


class FakeIds:
    def __init__(self, experiments: dict[str, str], runs: dict[str, str]) -> None:
        self.maps = {"experiment": experiments, "run": runs}

    async def central(self, kind: str, primary_id: str) -> str | None:
        return self.maps[kind].get(primary_id)

    async def centrals(self, kind: str, primary_ids: set[str]) -> dict[str, str]:
        return {p: c for p, c in self.maps[kind].items() if p in primary_ids}


def dual(prefix: str) -> WorkspaceLink:
    return WorkspaceLink(
        "north", 1, "dual", "a", "a", None, mirror="central", mirror_workspace=None if prefix else "north",
        mirror_prefix=prefix,
    )  # fmt: skip


async def test_an_experiment_filter_names_the_central_copies_and_the_workspace_prefix() -> None:
    failover = Failover({}, None)  # type: ignore[arg-type]
    ids: Any = FakeIds({"1": "7", "2": "9"}, {})
    narrowed = await failover._experiment_filter(dual("north/"), ids, "experiment_id IN ('1', '5') AND name = 'x'")
    assert narrowed == "experiment_id IN ('7', '-1') AND name = 'north/x' AND name LIKE 'north/%'"
    assert await failover._experiment_filter(dual("north/"), ids, "") == "name LIKE 'north/%'"
    assert await failover._experiment_filter(dual(""), ids, "experiment_id = '2'") == "experiment_id = '9'"


async def test_a_run_filter_names_the_central_copies() -> None:
    failover = Failover({}, None)  # type: ignore[arg-type]
    ids: Any = FakeIds({}, {"a" * 32: "b" * 32})
    narrowed = await failover._run_filter(ids, f"params.p = '1' and attributes.run_id IN ('{'a' * 32}', 'zz')")
    assert narrowed == f"params.p = '1' and attributes.run_id IN ('{'b' * 32}', '{'0' * 32}')"


def test_answers_keep_only_the_workspace_copies() -> None:
    spec = {route.name: route for route in FORWARDED_ROUTES}
    page: dict[str, Any] = {"experiments": [{"experiment_id": "7"}, {"experiment_id": "8"}], "next_page_token": "t"}
    _keep_own(spec["POST /mlflow/experiments/search"], page, {"experiment": {"7": "1"}, "run": {}}, "")
    assert page == {"experiments": [{"experiment_id": "7"}], "next_page_token": "t"}
    runs: dict[str, Any] = {"runs": [{"info": {"run_id": "x"}}]}
    _keep_own(spec["POST /mlflow/runs/search"], runs, {"experiment": {}, "run": {}}, "")
    assert runs == {}
    with pytest.raises(ResourceNotFound, match="Run with id=r not found"):
        _keep_own(spec["GET /mlflow/runs/get"], {"run": {"info": {"run_id": "x"}}}, {"experiment": {}, "run": {}},
                  "Run with id=r not found")  # fmt: skip
