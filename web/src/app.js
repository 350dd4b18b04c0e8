// The dashboard: an overview of every website and a page per website.
// Plain DOM, hash routing (#/ and #/websites/<id>), uPlot for the chart.
// Everything it shows comes from the public API; it signs in with an API
// token into an HttpOnly session cookie (POST /session), so no script ever
// holds the token after sign-in.
import uPlot from "uplot";
import { drawAlerts } from "./alerts.js";
import { channelsPage } from "./channels.js";
import { drawMaintenance, pauseButton } from "./maintenance.js";

const app = document.getElementById("app");
const REFRESH_MS = 10000;
let refreshTimer = null;
let chart = null;

// ---------------------------------------------------------------- helpers

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401 && path !== "/session") {
    signIn();
    throw new SignedOut();
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  return { ok: response.ok, status: response.status, data };
}

/// Thrown after a 401 has replaced the page with the sign-in form.
class SignedOut extends Error {}

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  const d = Math.floor(seconds / 86400), hh = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  if (d) return `${d}d ${hh}h ${m}m`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

function utc(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : "—";
}

/// Shows a response's errors next to the form's fields (422) or above it.
function showErrors(form, response) {
  for (const node of form.querySelectorAll("[data-error-for]")) node.textContent = "";
  const errors = response.data?.errors ?? [];
  let placed = false;
  for (const { field, message } of errors) {
    const slot = form.querySelector(`[data-error-for="${field}"]`);
    if (slot) {
      slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
      placed = true;
    }
  }
  if (!placed) {
    form.querySelector('[data-error-for="form"]').textContent =
      response.data?.message ?? `request failed (${response.status})`;
  }
}

function field(label, name, attrs = {}) {
  return h("label", {}, label, h("input", { name, ...attrs }), h("span", { class: "error", "data-error-for": name }));
}

function websiteBody(form, regionNames) {
  const data = new FormData(form);
  const body = {};
  for (const key of ["url", "name"]) {
    const value = data.get(key);
    if (value !== null) body[key] = value;
  }
  const interval = data.get("interval_seconds");
  if (interval) body.interval_seconds = Number(interval);
  const emails = data.get("notify_emails");
  if (emails !== null) body.notify_emails = emails.split(",").map((e) => e.trim()).filter(Boolean);
  if (regionNames) {
    const chosen = data.getAll("regions");
    if (chosen.length) body.regions = chosen;
  }
  return body;
}

function schedule(fn) {
  clearInterval(refreshTimer);
  refreshTimer = setInterval(fn, REFRESH_MS);
}

// ---------------------------------------------------------------- session

function signIn() {
  clearInterval(refreshTimer);
  document.getElementById("sign-out").hidden = true;
  const form = h(
    "form",
    { class: "grid", id: "sign-in", novalidate: true },
    field("API token", "token", { type: "password", autocomplete: "current-password", required: true }),
    h("div", {}, h("button", { type: "submit" }, "Sign in"), h("div", { class: "error", "data-error-for": "form" })),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = form.querySelector('input[name="token"]').value.trim();
    const response = await api("POST", "/session", { token });
    if (!response.ok) return showErrors(form, response);
    route();
  });
  app.replaceChildren(
    h(
      "section",
      { class: "narrow" },
      h("h1", {}, "Sign in"),
      h("p", { class: "muted" }, "Use an API token (", h("code", {}, "monitor token create --scope write --name me"), " makes one)."),
      form,
    ),
  );
  form.querySelector("input").focus();
}

async function signOut() {
  await api("DELETE", "/session");
  signIn();
}

// ---------------------------------------------------------------- overview

async function overview() {
  const regions = (await api("GET", "/regions")).data ?? [];
  const form = h(
    "form",
    { class: "grid", id: "add-website", novalidate: true },
    field("URL", "url", { placeholder: "https://example.com", required: true }),
    field("Name", "name", { placeholder: "Example", required: true }),
    field("Interval (seconds)", "interval_seconds", { type: "number", value: "180", min: "10" }),
    field("Notify (emails, comma separated)", "notify_emails", { placeholder: "ops@example.com" }),
    h(
      "fieldset",
      { class: "regions" },
      h("legend", { class: "muted" }, "Regions"),
      regions.map((r) => h("label", {}, h("input", { type: "checkbox", name: "regions", value: r.name, checked: true }), r.name)),
      h("span", { class: "error", "data-error-for": "regions" }),
    ),
    h("div", {}, h("button", { type: "submit" }, "Add website"), h("div", { class: "error", "data-error-for": "form" })),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await api("POST", "/websites", websiteBody(form, true));
    if (!response.ok) return showErrors(form, response);
    form.reset();
    showErrors(form, { data: { errors: [] } });
    form.querySelector('[data-error-for="form"]').textContent = "";
    await refreshTable();
  });
  const table = h("tbody", { id: "websites" });
  app.replaceChildren(
    h("section", {}, h("h1", {}, "Add a website"), form),
    h(
      "section",
      {},
      h("h2", {}, "Websites"),
      h("table", {}, h("thead", {}, h("tr", {}, ["Website", "Status", "Uptime 24h", "Response", ""].map((t) => h("th", {}, t)))), table),
    ),
  );
  await refreshTable();
  schedule(refreshTable);
}

async function refreshTable() {
  const table = document.getElementById("websites");
  if (!table) return;
  const monitor = (await api("GET", "/monitor")).data ?? [];
  const uptimes = await Promise.all(monitor.map((w) => api("GET", `/monitor/${w.id}/uptime?days=1`)));
  if (document.querySelector("#websites tr.editing")) return; // do not wipe an edit in progress
  table.replaceChildren(
    ...monitor.map((w, i) => {
      const uptime = uptimes[i].data?.uptime_percent?.["1d"];
      const times = w.regions.map((r) => r.response_ms).filter((ms) => ms !== null && ms !== undefined);
      return h(
        "tr",
        { "data-website": w.id },
        h("td", {}, h("a", { href: `#/websites/${w.id}` }, w.name), h("div", { class: "muted" }, w.url)),
        h("td", {}, w.regions.map((r) => h("span", { class: `badge ${r.status}`, title: r.message ?? r.status }, `${r.region}: ${r.status}`))),
        h("td", {}, uptime === undefined ? "—" : `${uptime.toFixed(2)} %`),
        h("td", {}, times.length ? `${Math.max(...times)} ms` : "—"),
        h(
          "td",
          {},
          h(
            "div",
            { class: "row-actions" },
            h("button", { class: "secondary", onclick: () => edit(w) }, "Edit"),
            h("button", { class: "danger", onclick: () => remove(w) }, "Remove"),
          ),
        ),
      );
    }),
  );
  if (!monitor.length) table.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No websites yet.")));
}

function edit(website) {
  const row = document.querySelector(`tr[data-website="${website.id}"]`);
  if (!row) return;
  const form = h(
    "form",
    { class: "grid", novalidate: true },
    field("URL", "url", { value: website.url }),
    field("Name", "name", { value: website.name }),
    field("Interval (seconds)", "interval_seconds", { type: "number", value: String(website.interval_seconds) }),
    h(
      "div",
      { class: "row-actions" },
      h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", class: "secondary", onclick: () => { row.classList.remove("editing"); refreshTable(); } }, "Cancel"),
      h("div", { class: "error", "data-error-for": "form" }),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await api("PATCH", `/websites/${website.id}`, websiteBody(form, false));
    if (!response.ok) return showErrors(form, response);
    row.classList.remove("editing");
    await refreshTable();
  });
  row.classList.add("editing");
  row.replaceChildren(h("td", { colspan: "5" }, form));
  form.querySelector("input").focus();
}

async function remove(website) {
  if (!window.confirm(`Stop monitoring ${website.name}?`)) return;
  await api("DELETE", `/websites/${website.id}`);
  await refreshTable();
}

// ---------------------------------------------------------------- website page

async function websitePage(id) {
  const found = await api("GET", `/websites/${id}`);
  if (!found.ok) {
    app.replaceChildren(h("section", {}, h("h1", {}, "Website not found"), h("a", { href: "#/" }, "Back to the overview")));
    return;
  }
  const website = found.data;
  const region = h("select", { id: "region", "aria-label": "Region" }, h("option", { value: "" }, "All regions"), website.regions.map((r) => h("option", { value: r }, r)));
  const days = h("select", { id: "days", "aria-label": "Window" }, [1, 7, 30].map((d) => h("option", { value: String(d) }, `${d} day${d > 1 ? "s" : ""}`)));
  region.addEventListener("change", () => refreshWebsite(website));
  days.addEventListener("change", () => refreshWebsite(website));
  app.replaceChildren(
    h(
      "section",
      {},
      h("h1", {}, website.name, website.paused ? h("span", { class: "badge paused" }, "paused") : ""),
      h("div", { class: "muted" }, website.url),
      h("p", { id: "uptime-status", class: "big" }, "…"),
      pauseButton(website, { h, api }, () => websitePage(id)),
    ),
    h(
      "section",
      {},
      h("h2", {}, "Response time"),
      h("div", { class: "controls" }, h("label", {}, "Region", region), h("label", {}, "Window", days)),
      h("div", { id: "chart", "data-points": "0", "data-downtimes": "0" }),
      h("p", { class: "muted" }, "Shaded: downtime."),
    ),
    h("section", { id: "downtime-panel" }, h("h2", {}, "Downtime"), h("div", { id: "downtime-summary" }), h("div", { id: "downtime-list" })),
    h("section", { id: "maintenance-panel" }, h("h2", {}, "Maintenance"), h("div", { id: "maintenance-list" })),
    h("section", { id: "alerts-panel" }, h("h2", {}, "Alerts"), h("div", { id: "alerts-list" })),
    h("section", { id: "history-panel" }, h("h2", {}, "History"), h("div", { id: "history-list" })),
  );
  await drawHistory(website.id);
  await drawAlerts(website.id, { h, api, utc });
  await drawMaintenance(website.id, { h, api, utc, showErrors });
  await refreshWebsite(website);
  schedule(() => refreshWebsite(website));
}

async function refreshWebsite(website) {
  const region = document.getElementById("region")?.value ?? "";
  const days = document.getElementById("days")?.value ?? "1";
  const query = `days=${days}${region ? `&region=${encodeURIComponent(region)}` : ""}`;
  const [last, series, downtime] = await Promise.all([
    api("GET", `/monitor/${website.id}/last_downtime?days=90`),
    api("GET", `/monitor/${website.id}?${query}`),
    api("GET", `/monitor/${website.id}/downtime?${query}`),
  ]);
  const status = document.getElementById("uptime-status");
  if (!status) return;
  const incident = last.data;
  if (!incident) status.textContent = "No downtime recorded";
  else if (incident.ongoing) status.textContent = `Down for ${duration((Date.now() - Date.parse(incident.started_at)) / 1000)} (since ${utc(incident.started_at)})`;
  else status.textContent = `Up for ${duration((Date.now() - Date.parse(incident.ended_at)) / 1000)} since the last downtime`;
  drawChart(series.data ?? [], downtime.data ?? [], Number(days));
  drawDowntime(downtime.data ?? [], days);
}

function drawDowntime(incidents, days) {
  document.getElementById("downtime-summary").replaceChildren(
    h("p", {}, `${incidents.length} downtime${incidents.length === 1 ? "" : "s"} in the last ${days} day${days === "1" ? "" : "s"}.`),
  );
  const list = document.getElementById("downtime-list");
  if (!incidents.length) return list.replaceChildren();
  list.replaceChildren(
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["Region", "Start", "End", "Duration", "Cause"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        incidents.map((i) =>
          h(
            "tr",
            { class: "incident" },
            h("td", {}, i.region),
            h("td", {}, utc(i.started_at)),
            h("td", {}, i.ongoing ? "ongoing" : utc(i.ended_at)),
            h("td", {}, duration(i.duration_seconds)),
            h("td", {}, [i.cause, i.status_code].filter((x) => x !== null && x !== undefined).join(" ") || "—"),
          ),
        ),
      ),
    ),
  );
}

function drawChart(points, incidents, days) {
  const to = Date.now() / 1000;
  const from = to - days * 86400;
  const box = document.getElementById("chart");
  const regions = [...new Set(points.map((p) => p.region))].sort();
  const times = [...new Set(points.map((p) => Date.parse(p.time) / 1000))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const series = regions.map(() => times.map(() => null));
  for (const p of points) {
    series[regions.indexOf(p.region)][index.get(Date.parse(p.time) / 1000)] = p.response_ms;
  }
  const spans = incidents.map((i) => [Date.parse(i.started_at) / 1000, (i.ended_at ? Date.parse(i.ended_at) : Date.now()) / 1000]);
  box.dataset.points = String(points.length);
  box.dataset.downtimes = String(spans.length);
  const colours = ["#1d4ed8", "#12805c", "#9333ea", "#ea580c", "#0891b2"];
  const options = {
    width: Math.max(280, box.clientWidth),
    height: 280,
    // The whole selected window, however few points it holds.
    scales: { x: { time: true, range: () => [from, to] } },
    axes: [{}, { label: "ms" }],
    series: [{}, ...regions.map((r, i) => ({ label: r, stroke: colours[i % colours.length], width: 1.5, spanGaps: true, points: { show: true, size: 4 } }))],
    hooks: {
      drawClear: [
        (u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = "rgba(196, 50, 10, 0.15)";
          for (const [start, end] of spans) {
            const x0 = Math.max(u.bbox.left, u.valToPos(start, "x", true));
            const x1 = Math.min(u.bbox.left + u.bbox.width, u.valToPos(end, "x", true));
            if (x1 > x0) ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
          }
          ctx.restore();
        },
      ],
    },
  };
  if (chart) chart.destroy();
  box.replaceChildren();
  if (!points.length) {
    chart = null;
    box.replaceChildren(h("p", { class: "muted" }, "No checks in this window yet."));
    return;
  }
  chart = new uPlot(options, [times, ...series], box);
}

function actorName(actor) {
  return actor?.kind === "token" ? actor.name : actor?.kind ?? "unknown";
}

function change(c) {
  const show = (v) => (v === null || v === undefined ? "—" : typeof v === "string" ? v : JSON.stringify(v));
  return h("div", {}, h("code", {}, c.field), `: ${show(c.from)} → ${show(c.to)}`);
}

async function drawHistory(id) {
  const list = document.getElementById("history-list");
  const history = (await api("GET", `/websites/${id}/history`)).data ?? [];
  if (!list) return;
  list.replaceChildren(
    h(
      "table",
      { id: "history" },
      h("thead", {}, h("tr", {}, ["When", "Who", "What", "Changes"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        history.slice().reverse().map((e) =>
          h(
            "tr",
            {},
            h("td", {}, utc(e.occurred_at)),
            h("td", { class: "actor" }, actorName(e.actor)),
            h("td", {}, e.type),
            h("td", {}, (e.changes ?? []).map(change)),
          ),
        ),
      ),
    ),
  );
}

window.addEventListener("resize", () => {
  const box = document.getElementById("chart");
  if (chart && box) chart.setSize({ width: Math.max(280, box.clientWidth), height: 280 });
});

// ---------------------------------------------------------------- routing

function route() {
  clearInterval(refreshTimer);
  document.getElementById("sign-out").hidden = false;
  if (chart) {
    chart.destroy();
    chart = null;
  }
  const match = location.hash.match(/^#\/websites\/([0-9a-f-]+)$/i);
  const page = match
    ? websitePage(match[1])
    : location.hash === "#/channels"
      ? channelsPage(app, { h, api, utc, showErrors })
      : overview();
  page.catch((error) => {
    if (error instanceof SignedOut) return;
    app.replaceChildren(h("section", {}, h("h1", {}, "Something went wrong"), h("p", {}, String(error))));
  });
}

document.getElementById("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
