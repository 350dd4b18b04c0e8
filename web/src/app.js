// The dashboard: an overview of every website and a page per website.
// Plain DOM, hash routing (#/ and #/websites/<id>), uPlot for the chart.
// Everything it shows comes from the public API; it signs in with an API
// token into an HttpOnly session cookie (POST /session), so no script ever
// holds the token after sign-in.
import uPlot from "uplot";
import { drawAlerts } from "./alerts.js";
import { channelsPage } from "./channels.js";
import { statusPagesPage } from "./statuspages.js";
import { drawMaintenance, pauseButton } from "./maintenance.js";
import { drawCertificate } from "./certificate.js";

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
//
// The overview shows the summary's counts and one page of websites (down
// first by default), searched, filtered and sorted by the API; its state
// (q, status, sort, cursor) lives in the URL hash, so a view can be linked
// and the back button walks it. A refresh fetches the summary and the
// visible page only.

const PAGE_SIZE = 50;
/// Websites listed under "Down now"; the rest are a click away.
const DOWN_SHOWN = 10;
const SORTS = [
  ["status", "Status (down first)"],
  ["name", "Name"],
  ["last_change", "Last change"],
  ["uptime_24h", "Uptime 24h (lowest first)"],
  ["created", "Date added"],
];
const STATUSES = [["", "Any status"], ["down", "Down"], ["pending", "Pending"], ["up", "Up"]];
const COLUMNS = [
  ["Website", "name"],
  ["Status", "status"],
  ["Since", "last_change"],
  ["Regions", null],
  ["Uptime 24h", "uptime_24h"],
  ["Response", null],
  ["Actions", null],
];

/// The overview's state from the hash (`#/?q=...&status=...&sort=...&cursor=...`).
function viewOf(hash) {
  const query = new URLSearchParams(hash.replace(/^#\/?\??/, ""));
  return {
    q: query.get("q") ?? "",
    status: query.get("status") ?? "",
    sort: query.get("sort") ?? "status",
    cursor: query.get("cursor") ?? "",
  };
}

function hashOf(view) {
  const query = new URLSearchParams();
  for (const key of ["q", "status", "sort", "cursor"]) {
    if (view[key] && !(key === "sort" && view[key] === "status")) query.set(key, view[key]);
  }
  const text = query.toString();
  return text ? `#/?${text}` : "#/";
}

let view = viewOf("");
/// Cursors of the pages before the current one, for "Previous".
let trail = [];
/// The cursor of the page after the current one, from the Link header.
let nextCursor = null;
/// The view last announced to screen readers.
let announced = null;

/// Shows `next` and records it in the URL (a new history entry unless
/// `replace`).
function show(next, { replace = false, keepTrail = false } = {}) {
  if (!keepTrail) trail = [];
  view = next;
  const url = `${location.pathname}${location.search}${hashOf(view)}`;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  syncControls();
  refreshOverview();
}

function syncControls() {
  const search = document.getElementById("search");
  if (search && search !== document.activeElement) search.value = view.q;
  const status = document.getElementById("status-filter");
  if (status) status.value = view.status;
  const sort = document.getElementById("sort");
  if (sort) sort.value = view.sort;
  for (const th of document.querySelectorAll("#overview-table th[data-sort]")) {
    if (th.dataset.sort === view.sort) th.setAttribute("aria-sort", view.sort === "last_change" ? "descending" : "ascending");
    else th.removeAttribute("aria-sort");
  }
}

async function overview() {
  view = viewOf(location.hash);
  trail = [];
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
    await refreshOverview();
  });

  let typing = null;
  const search = h("input", { id: "search", type: "search", placeholder: "Name or URL", autocomplete: "off", value: view.q });
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => show({ ...view, q: search.value.trim(), cursor: "" }, { replace: true }), 250);
  });
  const status = h("select", { id: "status-filter" }, STATUSES.map(([value, label]) => h("option", { value }, label)));
  status.addEventListener("change", () => show({ ...view, status: status.value, cursor: "" }));
  const sort = h("select", { id: "sort" }, SORTS.map(([value, label]) => h("option", { value }, label)));
  sort.addEventListener("change", () => show({ ...view, sort: sort.value, cursor: "" }));
  const header = COLUMNS.map(([label, key]) =>
    key
      ? h("th", { scope: "col", "data-sort": key }, h("button", { type: "button", class: "sort", onclick: () => show({ ...view, sort: key, cursor: "" }) }, label))
      : h("th", { scope: "col" }, label),
  );
  const previous = h("button", { type: "button", id: "previous", class: "secondary", disabled: true }, "Previous");
  previous.addEventListener("click", () => {
    const cursor = trail.pop() ?? "";
    show({ ...view, cursor }, { keepTrail: true });
  });
  const next = h("button", { type: "button", id: "next", class: "secondary", disabled: true }, "Next");
  next.addEventListener("click", () => {
    if (!nextCursor) return;
    trail.push(view.cursor);
    show({ ...view, cursor: nextCursor }, { keepTrail: true });
  });

  app.replaceChildren(
    // The timer redraws these every 10 s: not live regions (a screen reader
    // would read them out each time); a change of view is announced below.
    h("section", { id: "summary", "aria-labelledby": "summary-title", "aria-live": "off" }, h("h1", { id: "summary-title" }, "Overview"), h("div", { id: "summary-counts" }), h("div", { id: "down-now" })),
    h(
      "section",
      { "aria-labelledby": "websites-title", "aria-live": "off" },
      h("h2", { id: "websites-title" }, "Websites"),
      h(
        "form",
        { class: "controls", role: "search", onsubmit: (event) => event.preventDefault() },
        h("div", { class: "control" }, h("label", { for: "search" }, "Search"), search),
        h("div", { class: "control" }, h("label", { for: "status-filter" }, "Status"), status),
        h("div", { class: "control" }, h("label", { for: "sort" }, "Sort by"), sort),
      ),
      h(
        "table",
        { id: "overview-table" },
        h("caption", { class: "muted", id: "page-caption" }, "Websites"),
        h("thead", {}, h("tr", {}, header)),
        h("tbody", { id: "websites" }),
      ),
      h("nav", { class: "pager", "aria-label": "Pages" }, previous, h("span", { id: "page-number", class: "muted" }), next),
      h("p", { id: "view-announcement", class: "visually-hidden", role: "status", "aria-live": "polite" }),
    ),
    h("section", {}, h("h2", {}, "Add a website"), form),
  );
  syncControls();
  await refreshOverview();
  schedule(refreshOverview);
}

function statusCount(label, count, status) {
  return h("div", { class: `count ${status}`, "data-count": status }, h("span", { class: "big" }, String(count)), h("span", {}, label));
}

async function refreshOverview() {
  const table = document.getElementById("websites");
  if (!table) return;
  const query = new URLSearchParams({ limit: String(PAGE_SIZE), sort: view.sort });
  if (view.q) query.set("q", view.q);
  if (view.status) query.set("status", view.status);
  if (view.cursor) query.set("cursor", view.cursor);
  const asked = view;
  const [summary, page] = await Promise.all([api("GET", "/monitor/summary"), fetchPage(`/monitor?${query}`)]);
  if (asked !== view || !document.getElementById("websites")) return; // a newer view is on its way
  drawSummary(summary.data);
  if (!page.ok && page.status === 400 && view.cursor) {
    // A stale or mangled cursor in a link: start from the first page.
    return show({ ...view, cursor: "" }, { replace: true });
  }
  if (document.querySelector("#websites tr.editing")) return; // do not wipe an edit in progress
  const websites = page.ok ? page.data ?? [] : [];
  nextCursor = page.next;
  document.getElementById("next").disabled = !nextCursor;
  document.getElementById("previous").disabled = !view.cursor;
  document.getElementById("page-number").textContent = `Page ${trail.length + 1}${view.cursor && !trail.length ? " (linked)" : ""}`;
  const filters = [view.q && `matching “${view.q}”`, view.status && `${view.status}`].filter(Boolean).join(", ");
  const caption =
    `${websites.length} website${websites.length === 1 ? "" : "s"} on this page${filters ? `, ${filters}` : ""}, sorted by ${SORTS.find(([k]) => k === view.sort)?.[1] ?? view.sort}`;
  document.getElementById("page-caption").textContent = caption;
  const shown = hashOf(view);
  if (shown !== announced) {
    // Only a new view (search, filter, sort, page) is announced, not a refresh.
    announced = shown;
    document.getElementById("view-announcement").textContent = caption;
  }
  table.replaceChildren(...websites.map(websiteRow));
  if (!websites.length) {
    const empty = view.q || view.status ? "No website matches." : "No websites yet.";
    table.replaceChildren(h("tr", {}, h("td", { colspan: String(COLUMNS.length), class: "muted" }, page.ok ? empty : page.data?.message ?? "Could not load the websites.")));
  }
}

/// A page of /monitor and the cursor of the next one (from `Link`).
async function fetchPage(path) {
  const response = await fetch(path);
  if (response.status === 401) {
    signIn();
    throw new SignedOut();
  }
  const data = await response.json().catch(() => null);
  const link = response.headers.get("link") ?? "";
  const target = link.match(/<([^>]*)>;\s*rel="next"/)?.[1];
  const next = target ? new URLSearchParams(target.split("?")[1] ?? "").get("cursor") : null;
  return { ok: response.ok, status: response.status, data, next };
}

function drawSummary(summary) {
  const counts = document.getElementById("summary-counts");
  if (!counts || !summary) return;
  const w = summary.websites;
  counts.replaceChildren(
    ...[h(
      "div",
      { class: "counts" },
      statusCount("down", w.down, "down"),
      statusCount("pending", w.pending, "pending"),
      statusCount("up", w.up, "up"),
      h("div", { class: "count" }, h("span", { class: "big" }, String(w.up + w.down + w.pending)), h("span", {}, "websites")),
    ),
    summary.regions.length > 1
      ? h("p", { class: "muted" }, summary.regions.map((r) => `${r.region}: ${r.checks.down} down, ${r.checks.up} up, ${r.checks.pending} pending`).join(" · "))
      : null].filter(Boolean),
  );
  const down = document.getElementById("down-now");
  const shown = summary.down.slice(0, DOWN_SHOWN);
  down.replaceChildren(
    shown.length
      ? h(
          "div",
          {},
          h("h2", {}, "Down now"),
          h("ul", { class: "down-list" }, shown.map((d) => h("li", {}, h("a", { href: `#/websites/${d.id}` }, d.name), ` since ${utc(d.since)}`))),
          w.down > shown.length
            ? h("p", {}, h("a", { href: hashOf({ q: "", status: "down", sort: "last_change", cursor: "" }) }, `and ${w.down - shown.length} more`))
            : null,
        )
      : h("p", { class: "muted" }, "Nothing is down."),
  );
}

function websiteRow(w) {
  return h(
    "tr",
    { "data-website": w.id, "data-status": w.status },
    h("th", { scope: "row" }, h("a", { href: `#/websites/${w.id}` }, w.name), h("div", { class: "muted" }, w.url)),
    h("td", {}, h("strong", { class: `state ${w.status}` }, w.status)),
    h("td", {}, h("time", { datetime: w.status_since }, utc(w.status_since))),
    h("td", {}, w.regions.map((r) => h("span", { class: `badge ${r.status}`, title: r.message ?? r.status }, `${r.region}: ${r.status}`))),
    h("td", {}, `${w.uptime_24h.toFixed(2)} %`),
    h("td", {}, w.response_ms === null || w.response_ms === undefined ? "—" : `${w.response_ms} ms`),
    h(
      "td",
      {},
      h(
        "div",
        { class: "row-actions" },
        h("button", { class: "secondary", onclick: () => edit(w), "aria-label": `Edit ${w.name}` }, "Edit"),
        h("button", { class: "danger", onclick: () => remove(w), "aria-label": `Remove ${w.name}` }, "Remove"),
      ),
    ),
  );
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
      h("button", { type: "button", class: "secondary", onclick: () => { row.classList.remove("editing"); refreshOverview(); } }, "Cancel"),
      h("div", { class: "error", "data-error-for": "form" }),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await api("PATCH", `/websites/${website.id}`, websiteBody(form, false));
    if (!response.ok) return showErrors(form, response);
    row.classList.remove("editing");
    await refreshOverview();
  });
  row.classList.add("editing");
  row.replaceChildren(h("td", { colspan: String(COLUMNS.length) }, form));
  form.querySelector("input").focus();
}

async function remove(website) {
  if (!window.confirm(`Stop monitoring ${website.name}?`)) return;
  await api("DELETE", `/websites/${website.id}`);
  await refreshOverview();
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
      h("p", { id: "certificate", class: "muted" }),
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
  await drawCertificate(website.id, { api, utc });
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
  const other = location.hash === "#/channels" || location.hash === "#/status-pages";
  if (!match && !other && document.getElementById("overview-table")) {
    // Back or forward between views of the overview: only the page changes.
    view = viewOf(location.hash);
    syncControls();
    schedule(refreshOverview);
    refreshOverview().catch(() => {});
    return;
  }
  const page = match
    ? websitePage(match[1])
    : location.hash === "#/channels"
      ? channelsPage(app, { h, api, utc, showErrors })
      : location.hash === "#/status-pages"
        ? statusPagesPage(app, { h, api, utc, showErrors })
        : overview();
  page.catch((error) => {
    if (error instanceof SignedOut) return;
    app.replaceChildren(h("section", {}, h("h1", {}, "Something went wrong"), h("p", {}, String(error))));
  });
}

document.getElementById("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
