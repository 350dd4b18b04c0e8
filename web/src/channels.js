// The channels page (#/channels): where alerts go. Lists the channels with
// their masked target, creates them (a webhook's signing secret is shown
// once), sends a test message, shows the delivery log, removes them.

const KINDS = {
  email: { label: "Email", fields: [["emails", "Addresses (comma-separated)", "ops@example.com"]] },
  webhook: { label: "Webhook (signed)", fields: [["url", "URL", "https://example.com/hooks/monitor"]] },
  slack: { label: "Slack", fields: [["url", "Incoming webhook URL", "https://hooks.slack.com/services/…"]] },
  discord: { label: "Discord", fields: [["url", "Webhook URL", "https://discord.com/api/webhooks/…"]] },
  teams: { label: "Microsoft Teams", fields: [["url", "Workflow or incoming webhook URL", "https://….webhook.office.com/…"]] },
  telegram: { label: "Telegram", fields: [["bot_token", "Bot token", "123456:ABC…"], ["chat_id", "Chat id", "-1001234567890"]] },
};

/// Renders the page into `app`; `ui` holds the page's helpers (h, api,
/// utc, showErrors).
export async function channelsPage(app, ui) {
  const { h } = ui;
  const kind = h("select", { name: "type", id: "channel-type" }, Object.entries(KINDS).map(([k, v]) => h("option", { value: k }, v.label)));
  const settings = h("div", { class: "channel-settings" });
  const showFields = () => {
    settings.replaceChildren(
      ...KINDS[kind.value].fields.map(([name, label, placeholder]) =>
        h("label", {}, label, h("input", { name, placeholder, required: true }), h("span", { class: "error", "data-error-for": name })),
      ),
    );
  };
  kind.addEventListener("change", showFields);
  showFields();
  const secret = h("div", { id: "channel-secret", role: "status" });
  const form = h(
    "form",
    { class: "grid", id: "add-channel", novalidate: true },
    h("label", {}, "Name", h("input", { name: "name", required: true }), h("span", { class: "error", "data-error-for": "name" })),
    h("label", {}, "Type", kind, h("span", { class: "error", "data-error-for": "type" })),
    settings,
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "default" }), "Every website's alerts"),
    h("div", {}, h("button", { type: "submit" }, "Add channel"), h("div", { class: "error", "data-error-for": "form" })),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { name: data.get("name"), type: data.get("type"), default: data.get("default") === "on" };
    for (const [name] of KINDS[body.type].fields) {
      const value = data.get(name) ?? "";
      body[name] = name === "emails" ? value.split(",").map((e) => e.trim()).filter(Boolean) : value;
    }
    const response = await ui.api("POST", "/channels", body);
    if (!response.ok) return ui.showErrors(form, response);
    form.reset();
    showFields();
    secret.replaceChildren(
      response.data.secret
        ? h("p", {}, "Signing secret of ", h("strong", {}, response.data.name), " (shown only now; verify deliveries with it): ", h("code", { id: "new-secret" }, response.data.secret))
        : "",
    );
    await refreshChannels(ui);
  });
  app.replaceChildren(
    h("section", {}, h("h1", {}, "Channels"), h("p", { class: "muted" }, "Where alerts go besides a website's own emails. Websites choose channels when added or edited; a default channel gets every website's alerts."), form, secret),
    h("section", {}, h("h2", {}, "Configured"), h("div", { id: "channel-list" })),
    h("section", { id: "deliveries-panel", hidden: true }, h("h2", { id: "deliveries-title" }, "Deliveries"), h("div", { id: "deliveries-list" })),
  );
  await refreshChannels(ui);
}

async function refreshChannels(ui) {
  const { h, api } = ui;
  const list = document.getElementById("channel-list");
  const channels = (await api("GET", "/channels")).data ?? [];
  if (!list) return;
  if (!channels.length) {
    list.replaceChildren(h("p", { class: "muted" }, "No channels yet."));
    return;
  }
  list.replaceChildren(
    h(
      "table",
      { id: "channels" },
      h("thead", {}, h("tr", {}, ["Name", "Type", "Sends to", "State", ""].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        channels.map((c) =>
          h(
            "tr",
            { "data-id": c.id },
            h("td", {}, c.name, c.default ? h("span", { class: "muted" }, " (default)") : ""),
            h("td", {}, KINDS[c.type]?.label ?? c.type),
            h("td", {}, h("code", {}, c.target)),
            h("td", {}, c.enabled ? "enabled" : `disabled: ${c.disabled_reason ?? ""}`),
            h(
              "td",
              { class: "row-actions" },
              h("button", { class: "secondary", type: "button", onclick: () => sendTest(c, ui) }, "Send test"),
              h("button", { class: "secondary", type: "button", onclick: () => showDeliveries(c, ui) }, "Deliveries"),
              c.enabled ? "" : h("button", { class: "secondary", type: "button", onclick: () => enable(c, ui) }, "Enable"),
              h("button", { class: "danger", type: "button", onclick: () => removeChannel(c, ui) }, "Delete"),
            ),
          ),
        ),
      ),
    ),
  );
}

async function sendTest(channel, ui) {
  await ui.api("POST", `/channels/${channel.id}/test`);
  await showDeliveries(channel, ui);
  await refreshChannels(ui);
}

async function enable(channel, ui) {
  await ui.api("PATCH", `/channels/${channel.id}`, { enabled: true });
  await refreshChannels(ui);
}

async function removeChannel(channel, ui) {
  if (!window.confirm(`Delete channel ${channel.name}? Websites that use it stop using it.`)) return;
  await ui.api("DELETE", `/channels/${channel.id}`);
  await refreshChannels(ui);
}

async function showDeliveries(channel, ui) {
  const { h, api, utc } = ui;
  const panel = document.getElementById("deliveries-panel");
  const deliveries = (await api("GET", `/channels/${channel.id}/deliveries?limit=50`)).data ?? [];
  if (!panel) return;
  panel.hidden = false;
  document.getElementById("deliveries-title").textContent = `Deliveries of ${channel.name}`;
  document.getElementById("deliveries-list").replaceChildren(
    deliveries.length
      ? h(
          "table",
          { id: "deliveries" },
          h("thead", {}, h("tr", {}, ["Queued", "Kind", "Status", "Attempts"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            deliveries.map((d) =>
              h(
                "tr",
                {},
                h("td", {}, utc(d.created_at)),
                h("td", {}, d.kind),
                h("td", { class: `delivery ${d.status}` }, d.status, d.last_error ? h("div", { class: "muted" }, d.last_error) : ""),
                h("td", {}, (d.attempt_log ?? []).map((a) => h("div", {}, `#${a.attempt} ${utc(a.at)}: ${a.status_code ? `HTTP ${a.status_code}` : a.error ?? "sent"} (${a.duration_ms} ms)`))),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, "Nothing sent yet."),
  );
}
