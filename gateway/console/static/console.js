// What every console page's script may use: window.fedgate.api (the gateway's JSON API from the signed-in
// browser, errors in MLflow's shape) and window.fedgate.table (a result table). No framework, no inline script.
(function () {
  "use strict";

  // Cross-site checks need nothing from the page: the browser sends Sec-Fetch-Site / Origin with every
  // fetch, and the gateway refuses a cookie-authenticated write that did not come from its own pages.
  async function api(path, options) {
    const opts = options || {};
    const init = { method: opts.method || "GET", credentials: "same-origin", headers: { Accept: "application/json" } };
    if (opts.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    if (opts.signal) init.signal = opts.signal;
    const response = await fetch(path, init);
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : {}; } catch (e) { data = { message: text }; }
    if (!response.ok) {
      const error = new Error((data && data.message) || response.statusText);
      error.status = response.status;
      error.errorCode = (data && data.error_code) || "";
      error.body = data;
      throw error;
    }
    return data;
  }

  function cell(value) {
    const td = document.createElement("td");
    if (typeof value === "number") td.className = "fg-num";
    td.textContent = value === null || value === undefined ? "" : String(value);
    return td;
  }

  // Fill `element` with a table of `columns` (names) and `rows` (arrays), all as text.
  function table(element, columns, rows) {
    const t = document.createElement("table");
    t.className = "fg-table";
    const head = t.createTHead().insertRow();
    for (const name of columns) {
      const th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    }
    const body = t.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      for (const value of row) tr.appendChild(cell(value));
    }
    element.replaceChildren(t);
    return t;
  }

  function showError(element, error) {
    element.textContent = (error.errorCode ? error.errorCode + ": " : "") + error.message;
    element.classList.remove("fg-hidden");
  }

  window.fedgate = { api: api, table: table, showError: showError };
})();
