// The website page's pause/resume button and "Maintenance" panel: the
// windows that cover the website (one-off or recurring), a form to plan a
// one-off window, and ending one early or deleting it.

/// The Pause/Resume button of `website`; `ui` holds the page's helpers.
export function pauseButton(website, ui, onChange) {
  const { h, api } = ui;
  const button = h("button", { type: "button", class: "secondary", id: "pause-toggle" }, website.paused ? "Resume checks" : "Pause checks");
  button.addEventListener("click", async () => {
    const response = await api("POST", `/websites/${website.id}/${website.paused ? "resume" : "pause"}`);
    if (response.ok) onChange(response.data);
  });
  return button;
}

function when(w, utc) {
  if (w.kind === "once") return `${utc(w.starts_at)} → ${utc(w.ends_at)}`;
  return `cron "${w.cron}" (${w.timezone}), ${w.duration_minutes} min each`;
}

/// Fills `#maintenance-list` for website `id`.
export async function drawMaintenance(id, ui) {
  const { h, api, utc, showErrors } = ui;
  const list = document.getElementById("maintenance-list");
  const windows = (await api("GET", `/maintenance?website=${id}`)).data ?? [];
  if (!list) return;
  const redraw = () => drawMaintenance(id, ui);
  const form = h(
    "form",
    { class: "grid", id: "add-maintenance", novalidate: true },
    h("label", {}, "Name", h("input", { name: "name", required: true, placeholder: "Database upgrade" }), h("span", { class: "error", "data-error-for": "name" })),
    h("label", {}, "Starts (UTC)", h("input", { name: "starts_at", type: "datetime-local", required: true }), h("span", { class: "error", "data-error-for": "starts_at" })),
    h("label", {}, "Hours", h("input", { name: "hours", type: "number", min: "0.25", step: "0.25", value: "1" }), h("span", { class: "error", "data-error-for": "ends_at" })),
    h("div", {}, h("button", { type: "submit" }, "Plan maintenance"), h("div", { class: "error", "data-error-for": "form" })),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const raw = data.get("starts_at");
    const start = raw ? new Date(`${raw}:00Z`) : new Date(NaN);
    const hours = Number(data.get("hours") || 1);
    const body = { name: data.get("name"), website_ids: [id] };
    if (!Number.isNaN(start.getTime())) {
      body.starts_at = start.toISOString();
      body.ends_at = new Date(start.getTime() + hours * 3600 * 1000).toISOString();
    }
    const response = await api("POST", "/maintenance", body);
    if (!response.ok) return showErrors(form, response);
    await redraw();
  });
  list.replaceChildren(
    windows.length
      ? h(
          "table",
          { id: "maintenance" },
          h("thead", {}, h("tr", {}, ["Name", "When", "State", ""].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            windows.map((w) =>
              h(
                "tr",
                { "data-id": w.id },
                h("td", {}, w.name, w.all_websites ? h("span", { class: "muted" }, " (all websites)") : ""),
                h("td", {}, when(w, utc)),
                h("td", {}, w.active ? h("span", { class: "badge maintenance" }, "maintenance") : w.next ? `next ${utc(w.next.starts_at)}` : "over"),
                h(
                  "td",
                  { class: "row-actions" },
                  w.active ? h("button", { type: "button", class: "secondary", onclick: async () => { await api("POST", `/maintenance/${w.id}/end`); await redraw(); } }, "End now") : "",
                  h("button", { type: "button", class: "danger", onclick: async () => { await api("DELETE", `/maintenance/${w.id}`); await redraw(); } }, "Delete"),
                ),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, "No maintenance planned. During a window checks go on, but nobody is alerted and the time does not count against uptime."),
    form,
  );
}
