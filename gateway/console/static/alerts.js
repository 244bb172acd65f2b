// The console's alerts page (gateway/console/alerts.py): the viewer's alerts from /api/2.0/sql/alerts, a form
// to create and edit one, run now, and each alert's history. Everything through window.fedgate.api.
(function () {
  "use strict";
  const API = "/api/2.0/sql/alerts";
  const $ = (id) => document.getElementById(id);
  const presets = JSON.parse($("fg-alert-presets").textContent);
  let editing = null; // the id of the alert the form edits, or null for a new one

  function text(tag, value, className) {
    const element = document.createElement(tag);
    element.textContent = value === null || value === undefined ? "" : String(value);
    if (className) element.className = className;
    return element;
  }

  function describe(condition) {
    const column = (condition.operand && condition.operand.column) || {};
    const subject = column.aggregation ? column.aggregation + "(" + column.name + ")" : column.name;
    if (condition.op === "IS_NULL") return subject + " IS NULL";
    const value = (condition.threshold && condition.threshold.value) || {};
    const shown = value.double_value !== undefined ? value.double_value
      : value.bool_value !== undefined ? String(value.bool_value) : "'" + value.string_value + "'";
    const symbols = { GREATER_THAN: ">", GREATER_THAN_OR_EQUAL: ">=", LESS_THAN: "<", LESS_THAN_OR_EQUAL: "<=",
      EQUAL: "=", NOT_EQUAL: "!=" };
    return subject + " " + (symbols[condition.op] || condition.op) + " " + shown;
  }

  function button(label, id, action) {
    const b = text("button", label);
    b.type = "button";
    b.dataset.id = id;
    b.dataset.action = action;
    b.className = "fg-alert-" + action;
    return b;
  }

  async function load() {
    const error = $("fg-alerts-error");
    error.classList.add("fg-hidden");
    try {
      const answer = await fedgate.api(API + "?page_size=200");
      render(answer.results || []);
    } catch (e) {
      fedgate.showError(error, e);
    }
  }

  function render(alerts) {
    const list = $("fg-alerts-list");
    if (!alerts.length) {
      list.replaceChildren(text("p", "No alerts yet: create one, or start from the low experiment reliability alert.",
        "fg-alert-note"));
      return;
    }
    const table = document.createElement("table");
    table.className = "fg-table";
    table.id = "fg-alerts-table";
    const head = table.createTHead().insertRow();
    for (const name of ["Name", "State", "Condition", "Schedule", "Last evaluated", "Next run", "Owner", ""]) {
      head.appendChild(text("th", name));
    }
    const body = table.createTBody();
    for (const alert of alerts) {
      const row = body.insertRow();
      row.dataset.id = alert.id;
      row.appendChild(text("td", alert.display_name));
      const state = alert.evaluation_state || alert.state;
      const cell = document.createElement("td");
      const badge = text("span", state, "fg-state fg-state-" + state);
      badge.title = alert.error_message || "";
      cell.appendChild(badge);
      row.appendChild(cell);
      row.appendChild(text("td", describe(alert.condition)));
      const schedule = alert.schedule;
      row.appendChild(text("td", schedule ? schedule.quartz_cron_schedule + " " + schedule.timezone_id +
        (schedule.pause_status === "PAUSED" ? " (paused)" : "") : "on demand"));
      row.appendChild(text("td", alert.last_evaluated_at || "never"));
      row.appendChild(text("td", alert.next_run_time || ""));
      row.appendChild(text("td", alert.owner_user_name));
      const actions = document.createElement("td");
      actions.className = "fg-actions";
      actions.append(button("Run now", alert.id, "run"), button("History", alert.id, "history"),
        button("Edit", alert.id, "edit"), button("Delete", alert.id, "delete"));
      row.appendChild(actions);
    }
    list.replaceChildren(table);
  }

  async function history(id) {
    const card = $("fg-alert-history-card");
    try {
      const [alert, answer] = await Promise.all([fedgate.api(API + "/" + id), fedgate.api(API + "/" + id + "/history")]);
      $("fg-alert-history-title").textContent = "History of " + alert.display_name;
      const rows = (answer.evaluations || []).map((e) => [e.started_at, e.trigger, e.state, e.value, e.row_count,
        e.notifications, e.error_message || e.condition]);
      fedgate.table($("fg-alert-history"), ["Started", "Trigger", "State", "Value", "Rows", "Notified",
        "Condition or error"], rows);
      card.classList.remove("fg-hidden");
    } catch (e) {
      fedgate.showError($("fg-alerts-error"), e);
    }
  }

  let saved = []; // the saved queries the viewer can see: [{id, display_name, query_text}]

  async function loadSaved() {
    try {
      const answer = await fedgate.api("/api/2.0/sql/queries?page_size=1000");
      saved = answer.results || [];
    } catch (e) {
      saved = []; // no saved queries to offer: the text below still works
    }
    const select = $("fg-alert-saved");
    select.replaceChildren(text("option", "the text below"));
    select.firstChild.value = "";
    for (const query of saved) {
      const option = text("option", query.display_name);
      option.value = query.id;
      select.appendChild(option);
    }
  }

  function showSaved() {
    const id = $("fg-alert-saved").value;
    const query = saved.find((q) => q.id === id);
    const area = $("fg-alert-query");
    area.readOnly = Boolean(query);
    if (query) area.value = query.query_text || "";
  }

  function openForm(title, values) {
    editing = values.id || null;
    $("fg-alert-saved").value = values.query_id || "";
    $("fg-alert-form-title").textContent = title;
    $("fg-alert-name").value = values.display_name || "";
    $("fg-alert-query").value = values.query_text || "";
    showSaved();
    $("fg-alert-column").value = values.column || "";
    $("fg-alert-aggregation").value = values.aggregation || "FIRST";
    $("fg-alert-op").value = values.op || "GREATER_THAN";
    $("fg-alert-threshold").value = values.threshold === undefined ? "" : values.threshold;
    $("fg-alert-empty").value = values.empty_result_state || "UNKNOWN";
    $("fg-alert-schedule").value = values.schedule || "";
    $("fg-alert-timezone").value = values.timezone_id || "UTC";
    $("fg-alert-pause").value = values.pause_status || "UNPAUSED";
    $("fg-alert-webhook").value = values.webhook || "";
    $("fg-alert-secret").value = "";
    $("fg-alert-email").value = values.email || "";
    $("fg-alert-notify-ok").checked = Boolean(values.notify_on_ok);
    $("fg-alert-retrigger").value = values.seconds_to_retrigger || 0;
    $("fg-alert-form-error").classList.add("fg-hidden");
    $("fg-alert-form-card").classList.remove("fg-hidden");
    $("fg-alert-name").focus();
  }

  function fromAlert(alert) {
    const column = (alert.condition.operand && alert.condition.operand.column) || {};
    const value = (alert.condition.threshold && alert.condition.threshold.value) || {};
    const threshold = value.double_value !== undefined ? value.double_value
      : value.bool_value !== undefined ? String(value.bool_value) : value.string_value;
    const webhook = (alert.subscriptions || []).find((s) => s.webhook);
    const email = (alert.subscriptions || []).find((s) => s.user_email);
    return {
      id: alert.id, display_name: alert.display_name, query_text: alert.query_text, query_id: alert.query_id,
      column: column.name,
      aggregation: column.aggregation, op: alert.condition.op, threshold: threshold,
      empty_result_state: alert.condition.empty_result_state,
      schedule: alert.schedule ? alert.schedule.quartz_cron_schedule : "",
      timezone_id: alert.schedule ? alert.schedule.timezone_id : "UTC",
      pause_status: alert.schedule ? alert.schedule.pause_status : "UNPAUSED",
      webhook: webhook ? webhook.webhook.url : "", email: email ? email.user_email : "",
      notify_on_ok: alert.notify_on_ok, seconds_to_retrigger: alert.seconds_to_retrigger,
    };
  }

  function threshold(raw) {
    const value = raw.trim();
    if (value === "true" || value === "false") return { bool_value: value === "true" };
    if (value !== "" && !Number.isNaN(Number(value))) return { double_value: Number(value) };
    return { string_value: value.replace(/^'(.*)'$/, "$1") };
  }

  function fields() {
    const op = $("fg-alert-op").value;
    const aggregation = $("fg-alert-aggregation").value;
    const condition = {
      op: op,
      operand: { column: { name: $("fg-alert-column").value.trim() } },
      empty_result_state: $("fg-alert-empty").value,
    };
    if (aggregation !== "FIRST") condition.operand.column.aggregation = aggregation;
    if (op !== "IS_NULL") condition.threshold = { value: threshold($("fg-alert-threshold").value) };
    const savedId = $("fg-alert-saved").value;
    const alert = {
      display_name: $("fg-alert-name").value.trim(),
      query_id: savedId || null,
      query_text: savedId ? null : $("fg-alert-query").value,
      condition: condition,
      notify_on_ok: $("fg-alert-notify-ok").checked,
      seconds_to_retrigger: Number($("fg-alert-retrigger").value || 0),
      subscriptions: [],
    };
    const cron = $("fg-alert-schedule").value.trim();
    if (cron) {
      alert.schedule = { quartz_cron_schedule: cron, timezone_id: $("fg-alert-timezone").value.trim() || "UTC",
        pause_status: $("fg-alert-pause").value };
    }
    const url = $("fg-alert-webhook").value.trim();
    if (url) {
      const webhook = { url: url };
      if ($("fg-alert-secret").value) webhook.secret = $("fg-alert-secret").value;
      alert.subscriptions.push({ webhook: webhook });
    }
    const email = $("fg-alert-email").value.trim();
    if (email) alert.subscriptions.push({ user_email: email });
    return alert;
  }

  async function save(event) {
    event.preventDefault();
    const error = $("fg-alert-form-error");
    error.classList.add("fg-hidden");
    try {
      const alert = fields();
      if (editing) {
        await fedgate.api(API + "/" + editing, { method: "PATCH", body: { alert: alert, update_mask: "*" } });
      } else {
        await fedgate.api(API, { method: "POST", body: { alert: alert } });
      }
      $("fg-alert-form-card").classList.add("fg-hidden");
      await load();
    } catch (e) {
      fedgate.showError(error, e);
    }
  }

  async function act(event) {
    const target = event.target.closest("button[data-action]");
    if (!target) return;
    const id = target.dataset.id;
    try {
      if (target.dataset.action === "run") {
        target.disabled = true;
        await fedgate.api(API + "/" + id + "/run", { method: "POST" });
        target.disabled = false;
        await load();
        await history(id);
      } else if (target.dataset.action === "history") {
        await history(id);
      } else if (target.dataset.action === "edit") {
        openForm("Edit alert", fromAlert(await fedgate.api(API + "/" + id)));
      } else if (target.dataset.action === "delete") {
        if (!window.confirm("Delete this alert and its history?")) return;
        await fedgate.api(API + "/" + id, { method: "DELETE" });
        $("fg-alert-history-card").classList.add("fg-hidden");
        await load();
      }
    } catch (e) {
      target.disabled = false;
      fedgate.showError($("fg-alerts-error"), e);
    }
  }

  $("fg-alert-new").addEventListener("click", async () => { await loadSaved(); openForm("New alert", {}); });
  $("fg-alert-reliability").addEventListener("click", () => openForm("New alert", presets.reliability));
  $("fg-alert-refresh").addEventListener("click", load);
  $("fg-alert-cancel").addEventListener("click", () => $("fg-alert-form-card").classList.add("fg-hidden"));
  $("fg-alert-form").addEventListener("submit", save);
  $("fg-alert-saved").addEventListener("change", showSaved);
  $("fg-alerts-list").addEventListener("click", act);
  loadSaved();
  load();
})();
