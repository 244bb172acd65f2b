"""The console's alerts page: the viewer's alerts with their state, a form to create and edit one, its history,
and "run now". The page itself carries no data: its script (static/alerts.js) calls the alerts API,
`/api/2.0/sql/alerts` (gateway/alerts/), with the browser's session, so the page can do exactly what the API
lets its viewer do: their own alerts, every alert for account admins. The documented "low experiment
reliability" alert is one click away: its query (gateway/sql/documented.py) is handed to the script in a data
block.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from litestar import Controller, Request, Response, get

from gateway.alerts.condition import AGGREGATIONS, OPERATORS, SYMBOLS
from gateway.console.shell import Console, page_opt
from gateway.sql.documented import SUCCESS_RATIO

PRESETS = {
    "reliability": {
        "display_name": "low experiment reliability",
        "query_text": SUCCESS_RATIO,
        "column": "success_ratio",
        "aggregation": "MIN",
        "op": "LESS_THAN",
        "threshold": "0.9",
        "empty_result_state": "OK",
        "schedule": "0 0/15 * * * ?",
    }
}


def _options(values: tuple[str, ...], labels: dict[str, str] | None = None) -> str:
    return "".join(
        f"<option value='{escape(value, quote=True)}'>{escape((labels or {}).get(value, value))}</option>"
        for value in values
    )


def _body() -> str:
    operators = {op: f"{SYMBOLS[op]}  ({op})" for op in OPERATORS}
    presets = escape(json.dumps(PRESETS), quote=False)
    return f"""
<script type='application/json' id='fg-alert-presets'>{presets}</script>
<div class='fg-card'>
  <div class='fg-alert-bar'>
    <button type='button' id='fg-alert-new' class='fg-button'>New alert</button>
    <button type='button' id='fg-alert-reliability' class='fg-button'>New "low experiment reliability" alert</button>
    <button type='button' id='fg-alert-refresh'>Refresh</button>
  </div>
  <div id='fg-alerts-error' class='fg-error fg-hidden'></div>
  <div id='fg-alerts-list'><p>Loading…</p></div>
</div>
<div class='fg-card fg-hidden' id='fg-alert-form-card'>
  <h2 id='fg-alert-form-title'>New alert</h2>
  <form id='fg-alert-form' class='fg-alert-form' autocomplete='off'>
    <label for='fg-alert-name'>Name</label>
    <input id='fg-alert-name' maxlength='255' required>
    <label for='fg-alert-saved'>Query: a saved query (the owner needs CAN_RUN on it), or a SELECT over
      system.mlflow written here; either runs with the owner's grants</label>
    <select id='fg-alert-saved'><option value=''>the text below</option></select>
    <textarea id='fg-alert-query' rows='9' spellcheck='false'></textarea>
    <label>Condition</label>
    <div class='fg-alert-row'>
      <select id='fg-alert-aggregation' aria-label='Aggregation'>{_options(AGGREGATIONS)}</select>
      <input id='fg-alert-column' placeholder='column' aria-label='Column' required>
      <select id='fg-alert-op' aria-label='Operator'>{_options(OPERATORS, operators)}</select>
      <input id='fg-alert-threshold' placeholder='0.9' aria-label='Threshold'>
      <label for='fg-alert-empty'>An empty result is</label>
      <select id='fg-alert-empty'>{_options(("UNKNOWN", "OK", "TRIGGERED"))}</select>
    </div>
    <label>Schedule (Quartz cron, seconds first; empty: run on demand only)</label>
    <div class='fg-alert-row'>
      <input id='fg-alert-schedule' placeholder='0 0/15 * * * ?' aria-label='Quartz cron expression'>
      <input id='fg-alert-timezone' value='UTC' aria-label='Time zone'>
      <select id='fg-alert-pause' aria-label='Pause status'>{_options(("UNPAUSED", "PAUSED"))}</select>
    </div>
    <label>Notify</label>
    <div class='fg-alert-row'>
      <input id='fg-alert-webhook' placeholder='webhook URL (on the allow-list)' aria-label='Webhook URL'>
      <input id='fg-alert-secret' type='password' placeholder='HMAC secret (kept if left empty)'
             aria-label='Webhook secret'>
      <input id='fg-alert-email' type='email' placeholder='e-mail address' aria-label='E-mail address'>
    </div>
    <div class='fg-alert-row'>
      <label><input type='checkbox' id='fg-alert-notify-ok'> also when it returns to OK</label>
      <label for='fg-alert-retrigger'>notify again while TRIGGERED every (s, 0: never)</label>
      <input id='fg-alert-retrigger' type='number' min='0' value='0'>
    </div>
    <div class='fg-alert-row'>
      <button type='submit' id='fg-alert-save' class='fg-button'>Save</button>
      <button type='button' id='fg-alert-cancel'>Cancel</button>
    </div>
    <div id='fg-alert-form-error' class='fg-error fg-hidden'></div>
  </form>
</div>
<div class='fg-card fg-hidden' id='fg-alert-history-card'>
  <h2 id='fg-alert-history-title'>History</h2>
  <div id='fg-alert-history'></div>
</div>
"""


class AlertsPage(Controller):
    path = "/alerts"

    @get(
        "/",
        opt=page_opt("anyone signed in with a browser; the page shows what /api/2.0/sql/alerts lets them see"),
        name="console alerts",
        include_in_schema=False,
    )
    async def page(self, request: Request[Any, Any, Any], console: Console) -> Response[str]:
        return console.page(
            request, title="Alerts", body=_body(), active="alerts", scripts=["alerts.js"], styles=["alerts.css"]
        )
