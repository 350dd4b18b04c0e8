// The website page's "Alerts" panel: every SiteDown/SiteUp of the website
// and what was (not) sent, and why (GET /monitor/:id/alerts).

/// Fills `#alerts-list` for website `id`; `ui` holds the page's helpers
/// (h, api, utc).
export async function drawAlerts(id, ui) {
  const { h, api, utc } = ui;
  const list = document.getElementById("alerts-list");
  const alerts = (await api("GET", `/monitor/${id}/alerts?days=30`)).data ?? [];
  if (!list) return;
  if (!alerts.length) {
    list.replaceChildren(h("p", { class: "muted" }, "No outage or recovery in the last 30 days."));
    return;
  }
  const delivery = (d) => {
    if (!d.delivery) return d.planned ? "planned" : `skipped: ${d.reason ?? "—"}`;
    const x = d.delivery;
    const last = x.attempt_log?.[x.attempt_log.length - 1];
    const code = last?.status_code ? `HTTP ${last.status_code}` : last?.error ?? "";
    const when = x.delivered_at ? ` at ${utc(x.delivered_at)}` : x.next_attempt_at ? `, next try ${utc(x.next_attempt_at)}` : "";
    return `${x.status} after ${x.attempts} attempt${x.attempts === 1 ? "" : "s"}${code ? ` (${code})` : ""}${when}`;
  };
  list.replaceChildren(
    h(
      "table",
      { id: "alerts" },
      h("caption", { class: "muted" }, "Newest first. A website is down or up again under its down policy; only then is anyone alerted."),
      h("thead", {}, h("tr", {}, ["When", "Event", "Verdict", "Alerted", "Destinations"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        alerts.map((a) =>
          h(
            "tr",
            { "data-event": a.event_id },
            h("td", {}, utc(a.occurred_at)),
            h("td", {}, `${a.type} (${a.region})`),
            h("td", {}, `${a.outcome}: ${a.regions_down.length} of ${a.regions_total} region${a.regions_total === 1 ? "" : "s"} down, policy ${a.down_policy}`),
            h("td", { class: a.alerted ? "alerted" : "suppressed" }, a.alerted ? "yes" : `no: ${a.suppressed ?? "nothing planned"}`),
            h("td", {}, a.destinations.map((d) => h("div", {}, h("strong", {}, d.name), ` (${d.type}): ${delivery(d)}`))),
          ),
        ),
      ),
    ),
  );
}
