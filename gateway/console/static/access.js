// Who can see what: the access console's pages (gateway/console/access/pages.py) filled from its JSON API
// (gateway/console/access/routes.py). Every value is put into the page as text (textContent), never as HTML.
(function () {
  "use strict";

  const root = document.getElementById("fg-access");
  if (!root) return;
  const API = root.dataset.api;
  const PAGES = "/fedgate/console/access";
  const content = document.getElementById("fg-access-content");
  const errorBox = document.getElementById("fg-access-error");
  const notice = document.getElementById("fg-access-notice");
  const scopeNote = document.getElementById("fg-access-scope");

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else if (key.startsWith("data-") || key === "id" || key === "href" || key === "type" || key === "name" ||
               key === "value" || key === "placeholder" || key === "for" || key === "aria-label") {
        node.setAttribute(key, String(value));
      }
    }
    for (const child of children || []) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function card(title, children, id) {
    return el("section", { className: "fg-card", id: id }, [el("h2", { text: title }), ...children]);
  }

  function fail(error) {
    window.fedgate.showError(errorBox, error);
  }

  function tell(text) {
    notice.textContent = text;
    notice.classList.remove("fg-hidden");
  }

  function api(path, options) {
    return window.fedgate.api(API + path, options);
  }

  function principalLink(ref) {
    const label = (ref.kind === "group" ? "group " : ref.kind === "service_principal" ? "service principal " : "") +
      ref.name;
    return el("a", { href: PAGES + "/principals/" + ref.id, className: "fg-principal", text: label });
  }

  async function showScope() {
    const viewer = await api("/viewer");
    scopeNote.textContent = viewer.account_admin
      ? "You are an account admin: you see every principal and every grant."
      : "You administer " + viewer.workspaces.join(", ") + ": you see and revoke what is granted there.";
  }

  // -- principals and groups ---------------------------------------------------------------------------------

  function principalsView() {
    const filter = el("input", { id: "fg-filter", name: "filter", placeholder: "name contains", "aria-label": "Filter" });
    const kind = el("select", { id: "fg-kind", name: "kind", "aria-label": "Kind" }, [
      el("option", { value: "", text: "everyone" }),
      el("option", { value: "user", text: "users" }),
      el("option", { value: "service_principal", text: "service principals" }),
      el("option", { value: "group", text: "groups" }),
    ]);
    const search = el("button", { type: "submit", id: "fg-search", className: "fg-button", text: "Search" });
    const form = el("form", { id: "fg-principal-search", className: "fg-filters" }, [filter, kind, search]);
    const list = el("div", { id: "fg-principals" });
    const more = el("button", { type: "button", id: "fg-more", className: "fg-plain fg-hidden", text: "More" });
    content.replaceChildren(card("Principals and groups", [form, list, more]));
    let token = null;
    let rows = [];

    async function load(reset) {
      if (reset) { token = null; rows = []; }
      const query = new URLSearchParams({ max_results: "100" });
      if (filter.value.trim()) query.set("filter", filter.value.trim());
      if (kind.value) query.set("kind", kind.value);
      if (token) query.set("page_token", token);
      try {
        const page = await api("/principals?" + query.toString());
        rows = rows.concat(page.principals);
        token = page.next_page_token || null;
        more.classList.toggle("fg-hidden", !token);
        renderList();
      } catch (error) { fail(error); }
    }

    function renderList() {
      const table = el("table", { className: "fg-table" });
      const head = table.createTHead().insertRow();
      for (const name of ["Name", "Kind", "Display name", "Members", ""]) head.appendChild(el("th", { text: name }));
      const body = table.createTBody();
      for (const p of rows) {
        const tr = body.insertRow();
        tr.setAttribute("data-principal", String(p.id));
        tr.appendChild(el("td", {}, [principalLink(p)]));
        tr.appendChild(el("td", { text: p.kind.replace("_", " ") }));
        tr.appendChild(el("td", { text: p.display_name || "" }));
        tr.appendChild(el("td", { text: p.kind === "group" ? String(p.member_count || 0) : "" }));
        const flags = [];
        if (p.account_admin) flags.push("account admin");
        if (p.active === false) flags.push("disabled");
        tr.appendChild(el("td", { text: flags.join(", ") }));
      }
      list.replaceChildren(rows.length ? table : el("p", { className: "fg-note", text: "Nobody matches." }));
    }

    form.addEventListener("submit", (event) => { event.preventDefault(); load(true); });
    more.addEventListener("click", () => load(false));
    load(true);
  }

  // -- one principal -----------------------------------------------------------------------------------------

  const SECTIONS = [
    ["workspaces", "Workspaces"],
    ["experiments", "Experiments"],
    ["registered_models", "Registered models"],
    ["secret_scopes", "Secret scopes"],
    ["system_tables", "System tables and views (Unity Catalog)"],
  ];

  async function principalView() {
    const id = root.dataset.principal;
    let detail, effective;
    try {
      [detail, effective] = await Promise.all([api("/principals/" + id), api("/principals/" + id + "/effective")]);
    } catch (error) { fail(error); return; }
    const who = detail.principal;
    const facts = [
      el("p", {}, [el("strong", { id: "fg-who-name", text: who.name }), " · " + who.kind.replace("_", " ") +
        (who.display_name && who.display_name !== who.name ? " · " + who.display_name : "")]),
    ];
    if (who.account_admin) {
      facts.push(el("p", { className: "fg-warning", id: "fg-account-admin",
        text: "Account admin: may do everything, whatever is granted below." }));
    }
    if (who.active === false) facts.push(el("p", { className: "fg-warning", text: "Disabled: cannot sign in or lend grants." }));
    const sections = [card("Principal", facts, "fg-principal-card"), groupsCard(detail)];
    if (detail.members) sections.push(membersCard(detail));
    for (const [key, title] of SECTIONS) sections.push(accessCard(key, title, effective[key] || []));
    content.replaceChildren(...sections);
  }

  function groupsCard(detail) {
    if (!detail.groups.length) return card("Groups", [el("p", { className: "fg-note", text: "In no group." })]);
    const items = detail.groups.map((path) => {
      const li = el("li", {}, [principalLink(path.group)]);
      if (path.via.length) {
        li.appendChild(document.createTextNode(" through "));
        path.via.forEach((group, index) => {
          if (index) li.appendChild(document.createTextNode(", "));
          li.appendChild(principalLink(group));
        });
      } else {
        li.appendChild(document.createTextNode(" (directly)"));
      }
      return li;
    });
    return card("Groups", [el("ul", { id: "fg-groups" }, items)], "fg-groups-card");
  }

  function membersCard(detail) {
    const members = el("ul", { id: "fg-members" }, detail.members.map((m) => el("li", {}, [principalLink(m)])));
    const tree = (nodes) => el("ul", {}, nodes.map((node) => el("li", {}, [principalLink(node.group),
      node.members.length ? tree(node.members) : null])));
    const parts = [el("h3", { text: "Direct members" }), detail.members.length ? members : el("p", { text: "None." })];
    if (detail.nested_groups && detail.nested_groups.length) {
      parts.push(el("h3", { text: "Nested groups" }), tree(detail.nested_groups));
    }
    return card("Members", parts, "fg-members-card");
  }

  function accessCard(key, title, items) {
    if (!items.length) {
      return card(title, [el("p", { className: "fg-note", text: "Nothing here." })], "fg-section-" + key);
    }
    const table = el("table", { className: "fg-table fg-access-table" });
    const head = table.createTHead().insertRow();
    for (const name of ["Object", "Workspace", "In force", "Where it comes from", ""]) {
      head.appendChild(el("th", { text: name }));
    }
    const body = table.createTBody();
    for (const item of items) {
      const sources = item.sources.length ? item.sources : [null];
      sources.forEach((source, index) => {
        const tr = body.insertRow();
        tr.setAttribute("data-object", item.object);
        if (index === 0) {
          const span = String(sources.length);
          const name = el("td", { text: item.name });
          name.setAttribute("rowspan", span);
          if (item.owner) name.appendChild(el("div", { className: "fg-note", text: "reads with the rights of " + item.owner }));
          if (item.covers) name.appendChild(el("div", { className: "fg-note", text: item.covers }));
          const workspace = el("td", { text: item.workspace || "" });
          workspace.setAttribute("rowspan", span);
          let inForce = item.effective || "nothing";
          if (item.can_read !== undefined) inForce += item.can_read ? " (can read)" : " (cannot read)";
          const effective = el("td", { className: "fg-effective", text: inForce });
          effective.setAttribute("rowspan", span);
          tr.append(name, workspace, effective);
        }
        if (source === null) {
          tr.append(el("td", { className: "fg-note", text: "no grant of its own" }), el("td"));
          return;
        }
        tr.setAttribute("data-source", source.origin);
        tr.appendChild(el("td", {}, [el("span", { className: "fg-origin fg-origin-" + source.origin.replace(" ", "-"),
          text: source.origin }), " " + source.description]));
        const action = el("td");
        if (source.grant || source.origin === "workspace users") {
          const button = el("button", { type: "button", className: "fg-revoke", text: "Revoke" });
          button.addEventListener("click", () => confirmRevoke(item, source));
          action.appendChild(button);
        }
        tr.appendChild(action);
      });
    }
    return card(title, [table], "fg-section-" + key);
  }

  // -- revoke, after a confirmation -------------------------------------------------------------------------

  const dialog = document.getElementById("fg-revoke-dialog");
  const dialogText = document.getElementById("fg-revoke-text");
  const dialogAffects = document.getElementById("fg-revoke-affects");
  const dialogError = document.getElementById("fg-revoke-error");
  const confirmButton = document.getElementById("fg-revoke-confirm");
  let pending = null;

  function confirmRevoke(item, source) {
    const whom = source.holder ? (source.holder.kind === "group" ? "group " : "") + source.holder.name
      : "every user of " + (item.workspace || "the workspace");
    const on = source.grant ? source.grant.object : item.object;
    dialogText.textContent = "Revoke " + source.privilege + " on " + on + " from " + whom + ".";
    if (source.holder && source.holder.kind === "group") {
      dialogAffects.textContent = "Everyone in " + source.holder.name + " (" + source.affects +
        " principals, nested groups included) loses what this grant gives, at once.";
    } else if (!source.holder) {
      dialogAffects.textContent = "Every user of the workspace loses what this entry gives, at once.";
    } else {
      dialogAffects.textContent = source.holder.name + " loses what this grant gives, at once.";
    }
    dialogError.classList.add("fg-hidden");
    pending = source.grant ? source.grant : { workspace_users: true, object: item.object };
    confirmButton.disabled = false;
    dialog.showModal();
  }

  document.getElementById("fg-revoke-cancel").addEventListener("click", () => { pending = null; dialog.close(); });
  confirmButton.addEventListener("click", async () => {
    if (!pending) return;
    confirmButton.disabled = true;
    notice.classList.add("fg-hidden");
    try {
      await api("/revoke", { method: "POST", body: pending });
      const what = pending.privilege ? pending.privilege + " on " + pending.object : "the users entry of " + pending.object;
      pending = null;
      dialog.close();
      await principalView();
      tell("Revoked " + what + ".");
    } catch (error) {
      confirmButton.disabled = false;
      window.fedgate.showError(dialogError, error);
    }
  });

  // -- the audit log -----------------------------------------------------------------------------------------

  function auditView() {
    const fields = [
      ["actor", "actor (exact)"], ["action", "action (grants. for a prefix)"], ["target", "object starts with"],
      ["workspace", "workspace"], ["outcome", "outcome"],
    ].map(([name, placeholder]) => el("input", { id: "fg-audit-" + name, name: name, placeholder: placeholder,
      "aria-label": name }));
    const since = el("input", { id: "fg-audit-since", name: "since", type: "datetime-local", "aria-label": "since" });
    const until = el("input", { id: "fg-audit-until", name: "until", type: "datetime-local", "aria-label": "until" });
    const go = el("button", { type: "submit", id: "fg-audit-search", className: "fg-button", text: "Filter" });
    const form = el("form", { id: "fg-audit-form", className: "fg-filters" },
      [...fields, el("label", { text: "from" }), since, el("label", { text: "to" }), until, go]);
    const list = el("div", { id: "fg-audit" });
    const older = el("button", { type: "button", id: "fg-audit-older", className: "fg-plain fg-hidden", text: "Older" });
    content.replaceChildren(card("Audit log", [form, list, older]));
    let token = null;
    let rows = [];

    async function load(reset) {
      if (reset) { token = null; rows = []; }
      const query = new URLSearchParams({ max_results: "50" });
      for (const input of fields) if (input.value.trim()) query.set(input.name, input.value.trim());
      if (since.value) query.set("since", new Date(since.value).toISOString());
      if (until.value) query.set("until", new Date(until.value).toISOString());
      if (token) query.set("page_token", token);
      try {
        const page = await api("/audit?" + query.toString());
        rows = rows.concat(page.entries);
        token = page.next_page_token || null;
        older.classList.toggle("fg-hidden", !token);
        window.fedgate.table(list, ["Time", "Actor", "Action", "Object", "Outcome", "Details"], rows.map((r) =>
          [r.time.replace("T", " ").slice(0, 19), r.actor, r.action, r.target, r.outcome, JSON.stringify(r.details)]));
      } catch (error) { fail(error); }
    }

    form.addEventListener("submit", (event) => { event.preventDefault(); load(true); });
    older.addEventListener("click", () => load(false));
    load(true);
  }

  showScope().catch(fail);
  const views = { principals: principalsView, principal: principalView, audit: auditView };
  document.getElementById(root.dataset.view === "audit" ? "fg-tab-audit" : "fg-tab-principals")
    .classList.add("fg-active");
  (views[root.dataset.view] || principalsView)();
})();
