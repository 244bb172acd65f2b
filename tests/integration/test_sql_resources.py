"""What one SQL statement may make the gateway's PostgreSQL use besides time, through a real gateway.

The SQL endpoint runs anyone's statement on the database that also holds the policy, the outboxes and the index:
a statement needs no grant to read no table, and a cross join of `explode(array(...))` makes as many rows as it
likes. A gateway here runs with 1 MiB of `work_mem` and of temporary files (`server.sql_work_mem_mb`,
`server.sql_temp_file_limit_mb`), so a sort of a million numbers, which spills some 20 MB to disk, is stopped by
PostgreSQL with a Databricks-style error while another caller's statement answers beside it. Neither setting bounds
the memory of a value being built: each place of a statement that builds one checks its size against the statement's
share first (migration 0044).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import requests

from gateway.devstack import GatewayProcess
from tests.conftest import GATEWAY_ENV, Stack, write_config
from tests.support.identity import Admin

pytestmark = pytest.mark.integration
STATEMENTS = "/api/2.0/sql/statements"
HUNDRED = ", ".join(str(number) for number in range(100))
# A million distinct numbers, counted: PostgreSQL sorts them, no table read, so no grant needed.
SPILL = (
    f"WITH t AS (SELECT explode(array({HUNDRED})) AS v) "
    "SELECT COUNT(DISTINCT a.v * 10000 + b.v * 100 + c.v) AS n FROM t AS a CROSS JOIN t AS b CROSS JOIN t AS c"
)


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Iterator[GatewayProcess]:
    """A second gateway on the same database whose statements may use 1 MiB per sort and 1 MiB of temporary files."""
    config = write_config(stack.workdir / "fedgate-sql-limited.toml", stack.database_url, stack.stores)
    env = {**GATEWAY_ENV, "FEDGATE_SERVER_SQL_WORK_MEM_MB": "1", "FEDGATE_SERVER_SQL_TEMP_FILE_LIMIT_MB": "1"}
    gateway = GatewayProcess(config, env).start()
    yield gateway
    gateway.stop()


def run(url: str, token: str, statement: str) -> dict[str, Any]:
    response = requests.post(
        f"{url}{STATEMENTS}",
        json={"statement": statement, "warehouse_id": "any", "wait_timeout": "30s"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_statement_writing_more_temporary_files_than_allowed_fails_and_others_answer(
    stack: Stack, limited: GatewayProcess
) -> None:
    admin = Admin.of(stack)
    stranger = admin.person("stranger.spill@example.com")  # no grant at all
    other = admin.person("other.spill@example.com")
    answers: dict[str, dict[str, Any]] = {}

    def spill() -> None:
        answers["spill"] = run(limited.url, stranger.token, SPILL)

    thread = threading.Thread(target=spill)
    thread.start()
    ordinary = run(limited.url, other.token, f"SELECT max(v) AS top FROM (SELECT explode(array({HUNDRED})) AS v)")
    thread.join()
    assert ordinary["status"]["state"] == "SUCCEEDED", ordinary
    assert ordinary["result"]["data_array"] == [["99"]]
    status = answers["spill"]["status"]
    assert status["state"] == "FAILED", answers["spill"]
    assert status["error"]["error_code"] == "RESOURCE_EXHAUSTED", status
    assert status["sql_state"] == "53400"
    assert "server.sql_temp_file_limit_mb" in status["error"]["message"]
    # The database is well: the same statement answers through the gateway with the default limits (16 MiB per
    # sort, 256 MiB of temporary files), and the limited gateway answers what fits.
    whole = run(stack.url, stranger.token, SPILL)
    assert whole["status"]["state"] == "SUCCEEDED", whole
    assert whole["result"]["data_array"] == [["1000000"]]
    small = run(limited.url, stranger.token, SPILL.replace("CROSS JOIN t AS c", "").replace(" + c.v", ""))
    assert small["result"]["data_array"] == [["10000"]], small


def test_a_statement_past_a_limit_of_postgresql_fails_resource_exhausted(stack: Stack) -> None:
    """A value past PostgreSQL's 1 GB, or an array past its six dimensions (cheaper to build here), is the
    statement's own doing: it answered BAD_REQUEST as a mistake in the SQL would. It now says which limit."""
    stranger = Admin.of(stack).person("stranger.deep@example.com")
    answer = run(stack.url, stranger.token, "SELECT " + "array(" * 7 + "1" + ")" * 7 + " AS a")
    status = answer["status"]
    assert status["state"] == "FAILED", answer
    assert status["error"]["error_code"] == "RESOURCE_EXHAUSTED" and status["sql_state"] == "54000", status
    assert "dimensions" in status["error"]["message"]


A100, A200, A1000 = "a" * 100, "a" * 200, "a" * 1000
HUNDRED_LIST = f"array({HUNDRED})"
# Statements needing no grant that build one value (or one array) of 100 MB and more from a few literals, each
# with the function the refusal names. PostgreSQL answered every one: replace of replace, regexp_replace of an
# empty pattern, concat of a value with itself, collect_list of a cross join, transform() of a large element.
BUILDERS = (
    (f"SELECT length(replace(replace('{A100}', 'a', '{A1000}'), 'a', '{A1000}')) AS n", "replace()"),
    (f"SELECT length(regexp_replace(regexp_replace('{A1000}', '', '{A1000}'), '', '{A100}')) AS n", "regexp_replace()"),
    (
        "SELECT length(concat(x, x, x)) AS n "
        f"FROM (SELECT replace(replace('{A100}', 'a', '{A1000}'), 'a', '{A200}') AS x)",
        "concat()",
    ),
    (
        f"WITH t AS (SELECT explode({HUNDRED_LIST}) AS v) "
        f"SELECT size(collect_list(concat('{A100}', CAST(a.v AS STRING)))) AS n "
        "FROM t AS a CROSS JOIN t AS b CROSS JOIN t AS c",
        "collect_list()",
    ),
    (f"SELECT size(transform({HUNDRED_LIST}, x -> replace('{A1000}', 'a', '{A1000}'))) AS n", "transform()"),
)


def test_a_value_a_statement_builds_past_its_bound_fails_and_the_same_functions_answer_below_it(
    stack: Stack,
) -> None:
    """The memory of one value PostgreSQL builds is bounded by neither work_mem nor temp_file_limit: a statement
    needing no grant built values of hundreds of megabytes (a gigabyte and more with one more replace()) in the
    backend of the database that holds the policy and the outboxes. Each place that builds one now checks the
    size it would build against the statement's share (gateway/sql/transpile.py, migration 0044)."""
    stranger = Admin.of(stack).person("stranger.values@example.com")  # no grant at all
    for statement, what in BUILDERS:
        answer = run(stack.url, stranger.token, statement)
        status = answer["status"]
        assert status["state"] == "FAILED", (what, answer)
        assert status["error"]["error_code"] == "RESOURCE_EXHAUSTED", status
        assert status["sql_state"] == "54000", status
        assert what in status["error"]["message"], status
    ordinary = run(
        stack.url,
        stranger.token,
        "SELECT replace(s, '-', '_') AS r, regexp_replace(s, '[a-c]', '#') AS g, regexp_replace(s, 'b', '', 3) AS p, "
        "concat(s, '/', s) AS c, concat_ws(',', s, s) AS w, s || '!' AS d, array(s, s) AS a, "
        "transform(array(s, 'x'), e -> concat(e, e)) AS t FROM (SELECT 'a-b-c-b' AS s)",
    )
    assert ordinary["status"]["state"] == "SUCCEEDED", ordinary
    assert ordinary["result"]["data_array"] == [
        [
            "a_b_c_b",
            "#-#-#-#",
            "a--c-",
            "a-b-c-b/a-b-c-b",
            "a-b-c-b,a-b-c-b",
            "a-b-c-b!",
            '["a-b-c-b","a-b-c-b"]',
            '["a-b-c-ba-b-c-b","xx"]',
        ]
    ]
    collected = run(
        stack.url,
        stranger.token,
        "SELECT size(collect_list(v)) AS n, size(collect_list(DISTINCT v % 7)) AS d "
        f"FROM (SELECT explode({HUNDRED_LIST}) AS v)",
    )
    assert collected["result"]["data_array"] == [["100", "7"]], collected


# `v + v + v + v` over the same nested nine deep: PostgreSQL pulled each subquery up into the one around it, copying
# v's expression into each of the four places that read it, and planned 4^9 nodes: 280 MiB of one backend before
# anything ran (ten deep 1.1 GB, twelve some 16 GB). Nine is as deep as this test may go on a shared machine.
NESTED_DEPTH = 9
MIB = 1024 * 1024


def _nested(depth: int) -> str:
    text = "SELECT 1 AS v"
    for _ in range(depth):
        text = f"SELECT v + v + v + v AS v FROM ({text})"
    return text


def _memory(pid: int, field: str) -> int:
    """A field of a process's /proc status (VmRSS, VmHWM), in bytes; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


async def _backends(database_url: str) -> list[int]:
    """The client backends of the gateway's database: the gateway's SQL statements run on one of them."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


def _measured(stack: Stack, token: str, statement: str) -> tuple[dict[str, Any], dict[int, int]]:
    """The answer to `statement` and how much each backend of the gateway's database grew at its peak while it ran
    (a backend the pool opened meanwhile ran nothing before: its whole peak counts)."""
    before: dict[int, int] = {}
    for pid in asyncio.run(_backends(stack.database_url)):
        try:
            with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear:
                clear.write("5")  # VmHWM := VmRSS, so the peak read after is this statement's
        except (FileNotFoundError, ProcessLookupError):
            continue
        before[pid] = _memory(pid, "VmHWM")
    answer = run(stack.url, token, statement)
    after = asyncio.run(_backends(stack.database_url))
    return answer, {pid: _memory(pid, "VmHWM") - before.get(pid, 0) for pid in after}


def test_nested_subqueries_do_not_make_the_planner_copy_their_expressions(stack: Stack) -> None:
    """Neither work_mem nor the statement timeout bounds what the planner uses: flattening nested subqueries copied
    each column's expression into every reference to it, exponentially in the depth. The transpiler estimates that
    size and fences the subqueries that would blow it up with OFFSET 0 (gateway/sql/transpile.py), so the
    statement's backend stays small and the answer is the same."""
    stranger = Admin.of(stack).person("stranger.planner@example.com")  # no grant at all
    warm = run(stack.url, stranger.token, "SELECT 1 AS one")  # the SQL pool's connections exist
    assert warm["status"]["state"] == "SUCCEEDED", warm
    answer, grown = _measured(stack, stranger.token, _nested(NESTED_DEPTH))
    assert answer["status"]["state"] == "SUCCEEDED", answer
    assert answer["result"]["data_array"] == [[str(4**NESTED_DEPTH)]]
    assert grown and max(grown.values()) < 64 * MIB, {pid: bytes_ // MIB for pid, bytes_ in grown.items()}


# About 80 MB built by one replace() within the statement's share of the value budget (three places: 89 MB each).
WITHIN_BUDGET = f"SELECT length(replace(replace('{'a' * 80}', 'a', '{A1000}'), 'a', '{A1000}')) AS n"
HEADROOM = 64 * MIB


def _postmaster(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("PPid:"))


def _soft_address_space(pid: int) -> str:
    """A process's soft RLIMIT_AS as /proc writes it: a number of bytes, or "unlimited"."""
    with open(f"/proc/{pid}/limits", encoding="ascii") as limits:
        return next(line.split()[3] for line in limits if line.startswith("Max address space"))


def _set_address_space(limits: dict[int, str]) -> dict[int, str]:
    """Set the soft RLIMIT_AS of each process (bytes, or "unlimited"); answers the soft limits they had.

    As the database's own user: changing another user's limits takes CAP_SYS_RESOURCE, which a test may not hold,
    and a soft limit (below the hard one, left as it is) can be set back."""
    before: dict[int, str] = {}
    for pid, soft in limits.items():
        try:
            owner = os.stat(f"/proc/{pid}")
            before[pid] = _soft_address_space(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        subprocess.run(
            ["prlimit", "--pid", str(pid), f"--as={soft}:"],
            user=owner.st_uid,
            group=owner.st_gid,
            capture_output=True,
            check=False,  # the process may have ended meanwhile
            timeout=30,
        )
    return before


def test_a_statement_the_database_runs_out_of_memory_for_fails_resource_exhausted(stack: Stack) -> None:
    """PostgreSQL fails an allocation it cannot get with SQLSTATE 53200 (out_of_memory), as it does on a server run
    with strict overcommit, as PostgreSQL's documentation advises, when a statement wants more than is left. That is
    the statement's own size, like the 54000 of a value past a bound: it answered TEMPORARILY_UNAVAILABLE, the
    database "not available right now; try again", and a client retried it. The backends of the gateway's database
    (and the postmaster, for those it starts meanwhile) are given 64 MiB of address space beyond what they have,
    so the 80 MB that statement builds within its share of the value budget cannot be allocated."""
    stranger = Admin.of(stack).person("stranger.oom@example.com")  # no grant at all
    assert run(stack.url, stranger.token, WITHIN_BUDGET)["result"]["data_array"] == [["80000000"]]
    pids = asyncio.run(_backends(stack.database_url))
    pids.append(_postmaster(pids[0]))
    sizes = {pid: _memory(pid, "VmSize") for pid in pids}
    kept = _set_address_space({pid: str(size + HEADROOM) for pid, size in sizes.items() if size})
    try:
        answer = run(stack.url, stranger.token, WITHIN_BUDGET)
    finally:
        _set_address_space(kept)
    status = answer["status"]
    assert status["state"] == "FAILED", answer
    assert status["error"]["error_code"] == "RESOURCE_EXHAUSTED", status
    assert status["sql_state"] == "53200", status
    assert "out of memory" in status["error"]["message"], status
    # The database is well: the same statement answers again.
    assert run(stack.url, stranger.token, WITHIN_BUDGET)["result"]["data_array"] == [["80000000"]]


TAGS, TAG_CHARS = 600, 8000  # MLflow takes tags of up to 8,000 characters, as many as a run likes
METRICS, METRIC_NAME_CHARS = 20_000, 240


async def _large_run(database_url: str, run_id: str, create: bool) -> None:
    """A run of workspace 1001 as the index holds it once its owner logged 600 tags of 8,000 characters (a 4.8 MB
    map) and 20,000 metrics of long names (a 5 MB aggregated_metrics); or that run removed again."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        if not create:
            await connection.execute(
                "DELETE FROM ix_metric_latest WHERE run_key IN (SELECT run_key FROM ix_runs WHERE run_id = $1)", run_id
            )
            await connection.execute("DELETE FROM ix_runs WHERE run_id = $1", run_id)
            await connection.execute(
                "DELETE FROM ix_experiments WHERE workspace_id = 1001 AND experiment_id = $1", run_id
            )
            return
        await connection.execute(
            "INSERT INTO ix_experiments (workspace_id, experiment_id, name) VALUES (1001, $1, $2)", run_id, run_id
        )
        await connection.execute(
            "INSERT INTO ix_runs (run_id, workspace_id, experiment_id, run_name, tags) "
            "SELECT $1, 1001, $1, 'large', jsonb_object_agg('k' || n, repeat(md5(n::text), $3 / 32)) "
            "FROM generate_series(1, $2) AS n",
            run_id,
            TAGS,
            TAG_CHARS,
        )
        await connection.execute(
            "INSERT INTO ix_metric_latest (run_key, metric_name, latest_value, latest_step, latest_time, max_value, "
            "min_value) SELECT (SELECT run_key FROM ix_runs WHERE run_id = $1), lpad(n::text, $3, 'm'), n, 0, now(), "
            "n, n FROM generate_series(1, $2) AS n",
            run_id,
            METRICS,
            METRIC_NAME_CHARS,
        )
    finally:
        await connection.close()


def test_a_runs_large_stored_values_are_read_within_the_statements_budget(stack: Stack) -> None:
    """A run's tags, params and aggregated_metrics are as large as what was logged, and PostgreSQL decompresses (or
    builds) such a value in each place of a statement that reads it, keeping every copy until the row is done: a
    hundred `length(tags['k<n>'])` over one run with an 8 MB map took 754 MiB of the backend, fifty
    `size(aggregated_metrics)` of a run of 20,000 metrics 799 MiB, and a statement may be 100,000 characters long.
    Each reference now checks the value's size against its share of the 256 MiB first (migration 0047). A FROM item
    named alone is its whole row, which reads every column of it: ten such references to a subquery of ten copies
    of the tags counted as ten reads, not a hundred, and built 480 MB past the check; they count the whole row now."""
    reader = Admin.of(stack).token  # any reader of runs_latest, or of a view showing a run they logged
    run_id = f"large-{uuid.uuid4().hex[:8]}"
    asyncio.run(_large_run(stack.database_url, run_id, create=True))
    try:
        where = f" FROM system.mlflow.runs_latest WHERE run_id = '{run_id}'"
        ordinary = run(
            stack.url,
            reader,
            f"SELECT length(tags['k1']) AS t, size(map_keys(tags)) AS k, size(aggregated_metrics) AS m{where}",
        )
        assert ordinary["result"]["data_array"] == [[str(TAG_CHARS), str(TAGS), str(METRICS)]], ordinary
        # A FROM item named alone, or with a function's name (`x.to_jsonb`), is its whole row: each such reference
        # reads every column of it, ten copies of the tags here.
        columns = ", ".join(f"tags AS t{n}" for n in range(10))
        rows = " + ".join(["length(CAST(x AS STRING))"] * 10)
        amplified = (
            ("SELECT " + " + ".join(f"length(tags['k{n}'])" for n in range(1, 101)) + f" AS n{where}", "tags"),
            ("SELECT " + " + ".join(["size(aggregated_metrics)"] * 50) + f" AS n{where}", "aggregated_metrics"),
            (f"SELECT {rows} AS n FROM (SELECT {columns}{where}) AS x", "tags"),
        )
        for statement, what in amplified:
            answer, growth = _measured(stack, reader, statement)
            grown = max(growth.values(), default=0)
            status = answer["status"]
            assert status["state"] == "FAILED", answer
            assert status["error"]["error_code"] == "RESOURCE_EXHAUSTED" and status["sql_state"] == "54000", status
            assert f"a run's {what} holds" in status["error"]["message"], status
            assert grown < 64 * MIB, (what, grown // MIB)
    finally:
        asyncio.run(_large_run(stack.database_url, run_id, create=False))


# Each of these compiles to some 2.5 MiB in the backend that runs it (20 distinct ones: 50 MiB), and PostgreSQL
# keeps a backend's last 32 compiled patterns for the backend's life; the suffix makes each pattern a new one.
REGEX_PATTERNS = 20
# More statements than the SQL pool's connection serves before it is replaced (gateway/db/pools.py).
PAST_THE_LIMIT = 150


def _resident(pids: set[int]) -> int:
    """The most private memory (RssAnon) any of these processes holds now, in bytes."""
    return max((_memory(pid, "RssAnon") for pid in pids), default=0)


def test_the_backend_serving_sql_statements_is_replaced_before_what_they_left_in_it_piles_up(stack: Stack) -> None:
    """What a statement leaves in its backend outlives it and no statement budget covers it: compiled regular
    expressions are kept for the backend's life (DISCARD ALL keeps them too), and 40 distinct patterns grew a
    pooled backend from 18 to 76 MiB, where it stayed, in every connection of the SQL pool of every worker. The
    SQL pool now replaces a connection after some 100 statements (and once idle), so that memory goes with it."""
    stranger = Admin.of(stack).person("stranger.regex@example.com")  # no grant at all
    others = set(asyncio.run(_backends(stack.database_url)))
    config = write_config(stack.workdir / "fedgate-sql-recycled.toml", stack.database_url, stack.stores)
    gateway = GatewayProcess(config, GATEWAY_ENV).start()
    try:
        for n in range(REGEX_PATTERNS):
            answer = run(gateway.url, stranger.token, f"SELECT 'abc' rlike '([a-z0-9_]{{1,200}}){{1,40}}x{n}' AS m")
            assert answer["status"]["state"] == "SUCCEEDED", answer
        held = _resident(set(asyncio.run(_backends(stack.database_url))) - others)
        assert held > 40 * MIB, held // MIB  # the patterns are held by a backend of this gateway
        for _ in range(PAST_THE_LIMIT):
            assert run(gateway.url, stranger.token, "SELECT 1 AS one")["result"]["data_array"] == [["1"]]
        left = _resident(set(asyncio.run(_backends(stack.database_url))) - others)
        assert left < 24 * MIB, (held // MIB, left // MIB)
    finally:
        gateway.stop()
