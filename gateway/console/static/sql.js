// The SQL editor (gateway/console/queries/page.py): runs statements through the Statement Execution API,
// pages results a chunk at a time, cancels, and saves, opens and shares queries through the queries and
// permissions APIs. Every call is the signed-in person's own (window.fedgate.api: the session cookie).
(function () {
  "use strict";

  const STATEMENTS = "/api/2.0/sql/statements";
  const QUERIES = "/api/2.0/sql/queries";
  const PERMISSIONS = "/api/2.0/permissions/queries";
  const POLL_MS = 250;
  const NUMERIC = new Set(["BYTE", "SHORT", "INT", "LONG", "FLOAT", "DOUBLE", "DECIMAL"]);
  const LEVEL_WORDS = { CAN_VIEW: "Can view", CAN_RUN: "Can run", CAN_MANAGE: "Can manage" };
  const FIELDS = ["user_name", "group_name", "service_principal_name"];

  const $ = (id) => document.getElementById(id);
  const api = (path, options) => window.fedgate.api(path, options);

  const state = {
    open: null, // the saved query in the editor (as the API answered it), or null for a new one
    statementId: null,
    running: false,
    run: 0, // which run the poll loop serves: a new run or a cancel makes older loops stop
    manifest: null,
    chunk: 0,
    target: null, // the page (chunk) last asked for while its answer is on the way
    started: 0,
  };

  // -- small helpers --------------------------------------------------------------------------------------

  function hide(element) { element.classList.add("fg-hidden"); }
  function show(element) { element.classList.remove("fg-hidden"); }

  function clearError() {
    hide($("sq-error"));
    hide($("sq-where"));
    $("sq-error").textContent = "";
    $("sq-where").textContent = "";
  }

  // An error in MLflow's shape; where the message names a line and column, show it under the text and put the
  // editor's cursor there.
  function showError(code, message) {
    const box = $("sq-error");
    box.textContent = (code ? code + ": " : "") + message;
    show(box);
    const found = /line (\d+), column (\d+)/i.exec(message || "");
    if (!found) return;
    const line = Number(found[1]);
    const column = Number(found[2]);
    const text = $("sq-text").value;
    const lines = text.split("\n");
    if (line < 1 || line > lines.length) return;
    const where = $("sq-where");
    where.textContent = "line " + line + ", column " + column + ":\n" + lines[line - 1] + "\n" +
      " ".repeat(Math.max(0, column - 1)) + "^";
    show(where);
    let offset = 0;
    for (let i = 0; i < line - 1; i += 1) offset += lines[i].length + 1;
    offset += Math.min(Math.max(0, column - 1), lines[line - 1].length);
    const editor = $("sq-text");
    editor.focus();
    editor.setSelectionRange(offset, Math.min(offset + 1, text.length));
    updatePosition();
  }

  function updatePosition() {
    const editor = $("sq-text");
    const before = editor.value.slice(0, editor.selectionStart);
    const line = before.split("\n").length;
    const column = before.length - before.lastIndexOf("\n");
    $("sq-pos").textContent = "Line " + line + ", column " + column;
  }

  function setRunning(running) {
    state.running = running;
    $("sq-run").disabled = running;
    $("sq-cancel").disabled = !running;
  }

  function seconds() {
    return ((performance.now() - state.started) / 1000).toFixed(1) + " s";
  }

  // -- running ---------------------------------------------------------------------------------------------

  async function run() {
    if (state.running) return;
    clearError();
    const text = $("sq-text").value;
    const open = state.open;
    // A saved query run unchanged runs as itself (CAN_RUN on it); anything else as a statement of one's own.
    const asSaved = open && text === open.query_text;
    state.run += 1;
    const mine = state.run;
    state.statementId = null;
    state.manifest = null;
    state.chunk = 0;
    state.target = null;
    state.started = performance.now();
    setRunning(true);
    $("sq-status").textContent = "Running…";
    $("sq-results").replaceChildren();
    updatePager();
    let answer;
    try {
      answer = asSaved
        ? await api(QUERIES + "/" + encodeURIComponent(open.id) + "/run", { method: "POST", body: { wait_timeout: "0s" } })
        : await api(STATEMENTS, { method: "POST", body: { statement: text, wait_timeout: "0s" } });
    } catch (error) {
      setRunning(false);
      $("sq-status").textContent = "Refused.";
      showError(error.errorCode, error.message);
      return;
    }
    state.statementId = answer.statement_id;
    $("sq-status").dataset.statement = answer.statement_id;
    await follow(mine, answer);
  }

  // Poll the statement until it ends; then show its first page, its error, or that it was cancelled.
  async function follow(mine, first) {
    let answer = first;
    while (answer.status.state === "PENDING" || answer.status.state === "RUNNING") {
      $("sq-status").textContent = (answer.status.state === "PENDING" ? "Waiting" : "Running") + "… " + seconds();
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      if (mine !== state.run) return;
      try {
        answer = await api(STATEMENTS + "/" + encodeURIComponent(answer.statement_id));
      } catch (error) {
        setRunning(false);
        showError(error.errorCode, error.message);
        return;
      }
      if (mine !== state.run) return;
    }
    setRunning(false);
    const status = answer.status;
    if (status.state === "SUCCEEDED") {
      state.manifest = answer.manifest;
      const total = answer.manifest.total_row_count;
      $("sq-status").textContent = total + (total === 1 ? " row" : " rows") +
        (answer.manifest.truncated ? " (cut at the row limit)" : "") + " in " + seconds() + ".";
      showChunk(answer.result || { chunk_index: 0, row_offset: 0, row_count: 0 });
    } else if (status.state === "CANCELED") {
      $("sq-status").textContent = "Cancelled after " + seconds() + ".";
    } else {
      $("sq-status").textContent = "Failed after " + seconds() + ".";
      const error = status.error || {};
      showError(error.error_code || status.state, error.message || "The statement did not succeed.");
    }
  }

  async function cancel() {
    if (!state.running || !state.statementId) return;
    $("sq-cancel").disabled = true;
    $("sq-status").textContent = "Cancelling…";
    try {
      await api(STATEMENTS + "/" + encodeURIComponent(state.statementId) + "/cancel", { method: "POST" });
    } catch (error) {
      showError(error.errorCode, error.message);
    }
  }

  // -- results, a chunk per page -------------------------------------------------------------------------------

  function showChunk(chunk) {
    const manifest = state.manifest;
    const columns = manifest.schema.columns || [];
    const rows = chunk.data_array || [];
    state.chunk = chunk.chunk_index || 0;
    const table = window.fedgate.table($("sq-results"), columns.map((c) => c.name), rows);
    const numeric = columns.map((c) => NUMERIC.has(c.type_name));
    for (const tr of table.querySelectorAll("tr")) {
      Array.from(tr.children).forEach((cell, index) => { if (numeric[index]) cell.classList.add("fg-num"); });
    }
    updatePager(chunk);
  }

  function updatePager(chunk) {
    const manifest = state.manifest;
    const pages = manifest ? manifest.total_chunk_count : 0;
    $("sq-prev").disabled = !manifest || state.chunk <= 0;
    $("sq-next").disabled = !manifest || state.chunk >= pages - 1;
    if (!manifest || !chunk || !manifest.total_row_count) {
      $("sq-page").textContent = "";
      return;
    }
    const first = chunk.row_offset + 1;
    const last = chunk.row_offset + chunk.row_count;
    $("sq-page").textContent = "Rows " + first + " to " + last + " of " + manifest.total_row_count +
      " · page " + (state.chunk + 1) + " of " + pages;
  }

  // Quick clicks add up: each turn starts from the page last asked for, and only its answer is shown.
  async function turn(step) {
    const from = state.target === null ? state.chunk : state.target;
    const wanted = from + step;
    if (!state.manifest || wanted < 0 || wanted >= state.manifest.total_chunk_count) return;
    state.target = wanted;
    const statementId = state.statementId;
    try {
      const chunk = await api(STATEMENTS + "/" + encodeURIComponent(statementId) + "/result/chunks/" + wanted);
      if (state.target !== wanted || state.statementId !== statementId) return;
      state.target = null;
      showChunk(chunk);
    } catch (error) {
      if (state.target === wanted) state.target = null;
      showError(error.errorCode, error.message);
    }
  }

  // -- saved queries ----------------------------------------------------------------------------------------

  async function loadList() {
    const list = $("sq-list");
    try {
      const answer = await api(QUERIES + "?page_size=1000");
      list.replaceChildren();
      for (const query of answer.results || []) {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "sq-open" + (state.open && state.open.id === query.id ? " sq-current" : "");
        button.dataset.id = query.id;
        const name = document.createElement("span");
        name.textContent = query.display_name;
        const who = document.createElement("small");
        who.textContent = query.owner_user_name + " · " + (LEVEL_WORDS[query.permission_level] || "");
        button.append(name, who);
        button.addEventListener("click", () => openQuery(query.id));
        item.appendChild(button);
        list.appendChild(item);
      }
      hide($("sq-list-error"));
    } catch (error) {
      window.fedgate.showError($("sq-list-error"), error);
    }
  }

  function showOpen() {
    const open = state.open;
    const manage = open && open.permission_level === "CAN_MANAGE";
    $("sq-level").textContent = open ? (LEVEL_WORDS[open.permission_level] || "") + " · " + open.owner_user_name : "";
    $("sq-delete").disabled = !manage;
    $("sq-save").disabled = Boolean(open) && !manage;
    $("sq-saved").textContent = open ? "Saved " + open.update_time.replace("T", " ").replace(/\.\d+Z$/, " UTC") : "";
    const url = new URL(window.location.href);
    if (open) url.searchParams.set("query", open.id); else url.searchParams.delete("query");
    window.history.replaceState(null, "", url.pathname + url.search);
    if (open) {
      show($("sq-share-card"));
      $("sq-share").classList.toggle("fg-hidden", !manage);
      loadAcl();
    } else {
      hide($("sq-share-card"));
    }
    for (const button of document.querySelectorAll(".sq-open")) {
      button.classList.toggle("sq-current", Boolean(open) && button.dataset.id === open.id);
    }
  }

  async function openQuery(id) {
    clearError();
    try {
      state.open = await api(QUERIES + "/" + encodeURIComponent(id));
    } catch (error) {
      showError(error.errorCode, error.message);
      return;
    }
    $("sq-name").value = state.open.display_name;
    $("sq-text").value = state.open.query_text;
    updatePosition();
    showOpen();
  }

  function newQuery() {
    clearError();
    state.open = null;
    $("sq-name").value = "";
    $("sq-text").value = "";
    showOpen();
    $("sq-text").focus();
  }

  async function save(asNew) {
    clearError();
    const fields = { display_name: $("sq-name").value.trim() || "Untitled query", query_text: $("sq-text").value };
    try {
      if (state.open && !asNew) {
        state.open = await api(QUERIES + "/" + encodeURIComponent(state.open.id), {
          method: "PATCH",
          body: { update_mask: "display_name,query_text", query: fields },
        });
      } else {
        state.open = await api(QUERIES, { method: "POST", body: { query: fields } });
      }
    } catch (error) {
      showError(error.errorCode, error.message);
      return;
    }
    $("sq-name").value = state.open.display_name;
    showOpen();
    await loadList();
  }

  async function remove() {
    const open = state.open;
    if (!open || !window.confirm("Delete the query “" + open.display_name + "” for everyone it is shared with?")) return;
    try {
      await api(QUERIES + "/" + encodeURIComponent(open.id), { method: "DELETE" });
    } catch (error) {
      showError(error.errorCode, error.message);
      return;
    }
    newQuery();
    await loadList();
  }

  // -- sharing -------------------------------------------------------------------------------------------------

  function principalOf(entry) {
    for (const field of FIELDS) if (entry[field]) return { field: field, name: entry[field] };
    return null;
  }

  function renderAcl(acl) {
    const open = state.open;
    const manage = open && open.permission_level === "CAN_MANAGE";
    const table = $("sq-acl");
    table.replaceChildren();
    const head = table.createTHead().insertRow();
    for (const title of ["Who", "Kind", "Level", ""]) {
      const th = document.createElement("th");
      th.textContent = title;
      head.appendChild(th);
    }
    const body = table.createTBody();
    const entries = acl.access_control_list || [];
    for (const entry of entries) {
      const who = principalOf(entry);
      if (!who) continue;
      const owner = who.field === "user_name" && who.name === open.owner_user_name ||
        who.field === "service_principal_name" && who.name === open.owner_user_name;
      const levels = (entry.all_permissions || []).map((p) => p.permission_level);
      const row = body.insertRow();
      row.dataset.principal = who.name;
      row.insertCell().textContent = who.name;
      row.insertCell().textContent = who.field.replace("_name", "").replace("_", " ");
      row.insertCell().textContent = owner ? "Owner (can manage)" : levels.map((l) => LEVEL_WORDS[l] || l).join(", ");
      const actions = row.insertCell();
      if (manage && !owner) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "sq-small sq-unshare";
        button.textContent = "Remove";
        button.addEventListener("click", () => unshare(entries, who));
        actions.appendChild(button);
      }
    }
  }

  async function loadAcl() {
    const open = state.open;
    if (!open) return;
    try {
      renderAcl(await api(PERMISSIONS + "/" + encodeURIComponent(open.id)));
      hide($("sq-share-error"));
    } catch (error) {
      window.fedgate.showError($("sq-share-error"), error);
    }
  }

  async function share(event) {
    event.preventDefault();
    const open = state.open;
    if (!open) return;
    const entry = { permission_level: $("sq-share-level").value };
    entry[$("sq-share-kind").value] = $("sq-share-name").value.trim();
    try {
      renderAcl(await api(PERMISSIONS + "/" + encodeURIComponent(open.id), {
        method: "PATCH",
        body: { access_control_list: [entry] },
      }));
      $("sq-share-name").value = "";
      hide($("sq-share-error"));
    } catch (error) {
      window.fedgate.showError($("sq-share-error"), error);
    }
  }

  // Stop sharing with one principal: PUT every other grant (the owner needs none).
  async function unshare(entries, gone) {
    const open = state.open;
    const keep = [];
    for (const entry of entries) {
      const who = principalOf(entry);
      if (!who || (who.field === gone.field && who.name === gone.name) || who.name === open.owner_user_name) continue;
      const levels = (entry.all_permissions || []).map((p) => p.permission_level);
      const best = ["CAN_MANAGE", "CAN_RUN", "CAN_VIEW"].find((level) => levels.includes(level));
      if (!best) continue;
      const item = { permission_level: best };
      item[who.field] = who.name;
      keep.push(item);
    }
    try {
      renderAcl(await api(PERMISSIONS + "/" + encodeURIComponent(open.id), {
        method: "PUT",
        body: { access_control_list: keep },
      }));
    } catch (error) {
      window.fedgate.showError($("sq-share-error"), error);
    }
  }

  // -- wiring ----------------------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("sq-run").addEventListener("click", run);
    $("sq-cancel").addEventListener("click", cancel);
    $("sq-prev").addEventListener("click", () => turn(-1));
    $("sq-next").addEventListener("click", () => turn(1));
    $("sq-save").addEventListener("click", () => save(false));
    $("sq-save-as").addEventListener("click", () => save(true));
    $("sq-delete").addEventListener("click", remove);
    $("sq-new").addEventListener("click", newQuery);
    $("sq-share").addEventListener("submit", share);
    const editor = $("sq-text");
    for (const kind of ["keyup", "click", "input"]) editor.addEventListener(kind, updatePosition);
    editor.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        run();
      }
    });
    loadList();
    const wanted = new URL(window.location.href).searchParams.get("query");
    if (wanted) openQuery(wanted);
    document.body.dataset.ready = "sql";
  });
})();
