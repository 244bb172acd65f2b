"""The console's SQL editor page (`/fedgate/console/sql`): write, run, page, cancel, save, open and share queries.

The page is a frame; its script (static/sql.js) does the work through the gateway's JSON APIs with the
session cookie, so it can do exactly what the person could do with a token and nothing more:

- statements run through the Statement Execution API (`POST /api/2.0/sql/statements`, `wait_timeout: 0s`, then
  polled): the person's own grants and dynamic views apply. An opened saved query that is run unchanged runs
  through `POST /api/2.0/sql/queries/{id}/run`, which asks CAN_RUN on it;
- results come a chunk (1,000 rows) at a time (`GET .../result/chunks/{n}`), a page per chunk;
- an error shows the gateway's error code and message; where the message names a line and column, the editor
  puts its cursor there and the page shows the line with a caret under the column;
- Cancel calls `POST /api/2.0/sql/statements/{id}/cancel`;
- Save and Open use `/api/2.0/sql/queries`, Share `/api/2.0/permissions/queries/{id}` (PATCH to share, PUT
  without an entry to stop sharing).

`?query=<id>` opens a saved query, so a link to a query can be passed on.
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Controller, Request, Response, get

from gateway.console.shell import Console, page_opt

FIRST_TEXT = "SELECT status, count(*) AS runs\nFROM system.mlflow.runs_latest\nGROUP BY status\nORDER BY runs DESC"

BODY = """
<div class='sq-layout'>
  <aside class='fg-card sq-side' aria-label='Saved queries'>
    <div class='sq-side-head'><strong>Saved queries</strong>
      <button type='button' id='sq-new' class='sq-small'>New</button></div>
    <ul id='sq-list' class='sq-list'></ul>
    <div id='sq-list-error' class='fg-error fg-hidden' role='alert'></div>
  </aside>
  <section class='sq-main'>
    <div class='fg-card'>
      <div class='sq-bar'>
        <input id='sq-name' class='sq-name' placeholder='Untitled query' aria-label='Query name' maxlength='255'>
        <span id='sq-level' class='sq-level'></span>
        <span class='sq-spacer'></span>
        <button type='button' id='sq-run' class='fg-button' title='Ctrl+Enter'>Run</button>
        <button type='button' id='sq-cancel' disabled>Cancel</button>
        <button type='button' id='sq-save'>Save</button>
        <button type='button' id='sq-save-as'>Save as new</button>
        <button type='button' id='sq-delete' disabled>Delete</button>
      </div>
      <textarea id='sq-text' class='sq-text' spellcheck='false' rows='10' aria-label='SQL statement'>{text}</textarea>
      <div class='sq-under'><span id='sq-pos'>Line 1, column 1</span><span id='sq-saved'></span></div>
      <div id='sq-error' class='fg-error fg-hidden' role='alert'></div>
      <pre id='sq-where' class='sq-where fg-hidden'></pre>
    </div>
    <div class='fg-card'>
      <div class='sq-bar'>
        <span id='sq-status' class='sq-status'>Not run yet.</span>
        <span class='sq-spacer'></span>
        <button type='button' id='sq-prev' disabled>&#8249; Previous</button>
        <span id='sq-page' class='sq-page'></span>
        <button type='button' id='sq-next' disabled>Next &#8250;</button>
      </div>
      <div id='sq-results' class='sq-results'></div>
    </div>
    <div class='fg-card fg-hidden' id='sq-share-card'>
      <h2 class='sq-h2'>Sharing</h2>
      <table class='fg-table' id='sq-acl'></table>
      <form id='sq-share' class='sq-bar sq-share'>
        <select id='sq-share-kind' aria-label='Kind of principal'>
          <option value='group_name'>Group</option>
          <option value='user_name'>User</option>
          <option value='service_principal_name'>Service principal</option>
        </select>
        <input id='sq-share-name' placeholder='name' aria-label='Principal name' required>
        <select id='sq-share-level' aria-label='Permission level'>
          <option value='CAN_VIEW'>Can view</option>
          <option value='CAN_RUN' selected>Can run</option>
          <option value='CAN_MANAGE'>Can manage</option>
        </select>
        <button type='submit' id='sq-share-add' class='fg-button'>Share</button>
      </form>
      <div id='sq-share-error' class='fg-error fg-hidden' role='alert'></div>
    </div>
  </section>
</div>
"""


class SqlEditorController(Controller):
    path = "/sql"

    @get(
        "/",
        opt=page_opt("anyone signed in with a browser; statements run with the person's own grants"),
        name="console sql editor",
        include_in_schema=False,
    )
    async def page(self, request: Request[Any, Any, Any], console: Console) -> Response[str]:
        return console.page(
            request,
            title="SQL editor",
            body=BODY.replace("{text}", escape(FIRST_TEXT)),
            active="sql",
            scripts=["sql.js"],
            styles=["sql.css"],
        )
