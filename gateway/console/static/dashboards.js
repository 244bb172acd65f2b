// The dashboards page: each <section data-url=...> fetches its rows (JSON, run as the signed-in person) and
// shows them as a chart (Chart.js, window.Chart) beside a table of the same rows.
(function () {
  "use strict";

  const STATUS_COLOURS = {
    FINISHED: "#3ca45a", FAILED: "#d0473d", RUNNING: "#2272b4", KILLED: "#8a99a6", SCHEDULED: "#e0a331",
  };
  const PALETTE = ["#2272b4", "#3ca45a", "#d0473d", "#e0a331", "#8f5fbf", "#1fa2a6", "#8a99a6"];

  function number(value) {
    if (value === null || value === undefined) return null;
    const n = Number(value);
    return Number.isFinite(n) ? n : null;
  }

  // Decimals and doubles as people read them: 0.60000000000000000000 is 0.6, 0.1234567891 is 0.123457.
  const FRACTIONAL = new Set(["DECIMAL", "DOUBLE", "FLOAT"]);
  function shown(result) {
    return result.rows.map((row) => row.map((value, i) => {
      if (value === null || !FRACTIONAL.has(result.types[i])) return value;
      const n = Number(value);
      return Number.isFinite(n) ? String(Number(n.toPrecision(6))) : value;
    }));
  }

  function column(result, name) {
    return result.columns.indexOf(name);
  }

  function stackedBars(section, result) {
    const day = column(result, "day"), status = column(result, "status"), runs = column(result, "runs");
    const days = [...new Set(result.rows.map((r) => r[day]))];
    const statuses = [...new Set(result.rows.map((r) => r[status]))].sort();
    const datasets = statuses.map((s, i) => ({
      label: s,
      backgroundColor: STATUS_COLOURS[s] || PALETTE[i % PALETTE.length],
      data: days.map((d) => {
        const row = result.rows.find((r) => r[day] === d && r[status] === s);
        return row ? number(row[runs]) : 0;
      }),
    }));
    return {
      type: "bar",
      data: { labels: days, datasets: datasets },
      options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
    };
  }

  function bars(section, result, horizontal) {
    const label = column(result, section.dataset.label), value = column(result, section.dataset.value);
    const labels = result.rows.map((r) => r[label] || (r[column(result, "run_id")] || "").slice(0, 8));
    return {
      type: "bar",
      data: {
        labels: labels,
        datasets: [{ label: section.dataset.value, backgroundColor: "#2272b4", data: result.rows.map((r) => number(r[value])) }],
      },
      options: { indexAxis: horizontal ? "y" : "x", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true }, y: { beginAtZero: true } } },
    };
  }

  // The runs come newest first (the table's order); the chart reads left to right, oldest first.
  function band(section, result) {
    const label = column(result, "run_name"), id = column(result, "run_id");
    const rows = result.rows.slice().reverse();
    const series = (name) => rows.map((r) => number(r[column(result, name)]));
    const labels = rows.map((r) => r[label] || (r[id] || "").slice(0, 8));
    return {
      type: "line",
      data: {
        labels: labels,
        datasets: [
          { label: "pct_75", data: series("pct_75"), borderColor: "#9cc3e6", backgroundColor: "rgba(34,114,180,0.15)", fill: "+1", pointRadius: 0 },
          { label: "pct_25", data: series("pct_25"), borderColor: "#9cc3e6", pointRadius: 0, fill: false },
          { label: "median", data: series("median"), borderColor: "#2272b4", backgroundColor: "#2272b4", fill: false },
          { label: "min", data: series("min"), borderColor: "#8a99a6", borderDash: [4, 4], pointRadius: 0, fill: false },
          { label: "max", data: series("max"), borderColor: "#8a99a6", borderDash: [4, 4], pointRadius: 0, fill: false },
        ],
      },
      options: {},
    };
  }

  function chartOf(section, result) {
    switch (section.dataset.chart) {
      case "stacked-bars": return stackedBars(section, result);
      case "bars": return bars(section, result, false);
      case "hbars": return bars(section, result, true);
      case "band": return band(section, result);
      default: return null;
    }
  }

  function draw(section, result) {
    const config = chartOf(section, result);
    const canvas = section.querySelector("canvas");
    if (!config || !window.Chart || !canvas) return;
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options);
    new window.Chart(canvas, config);
  }

  // Clicking an experiment in a table chooses it in the filters (the metric trend needs one).
  function pickable(section, table, result) {
    const experiment = column(result, "experiment_id");
    if (experiment < 0) return;
    const input = document.getElementById("filter-experiment");
    const form = document.getElementById("filters");
    table.querySelectorAll("tbody tr").forEach((tr, i) => {
      tr.classList.add("fg-pick");
      tr.title = "Choose this experiment";
      tr.addEventListener("click", () => {
        input.value = result.rows[i][experiment];
        form.submit();
      });
    });
  }

  async function load(section) {
    const holder = section.querySelector(".fg-table");
    const error = section.querySelector(".fg-error");
    if (section.dataset.waiting) {
      section.dataset.loaded = "true";
      return;
    }
    try {
      const result = await window.fedgate.api(section.dataset.url);
      if (result.rows.length === 0) {
        holder.textContent = "No rows.";
      } else {
        const table = window.fedgate.table(holder, result.columns, shown(result));
        pickable(section, table, result);
        draw(section, result);
      }
      if (result.truncated) holder.appendChild(document.createTextNode("More rows than shown."));
      section.dataset.rows = String(result.rows.length);
    } catch (e) {
      holder.textContent = "";
      window.fedgate.showError(error, e);
    } finally {
      section.dataset.loaded = "true";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("section.fg-dashboard").forEach((section) => { load(section); });
  });
})();
