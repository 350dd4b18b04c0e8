// The status pages page (#/status-pages): public pages listing websites
// under display names. Creates a page (slug, title, description, one group
// of chosen websites), edits its title and description, deletes it, links
// to its public view, and posts updates to its websites' incidents.

const STATUSES = ["investigating", "identified", "monitoring", "resolved"];

/// Renders the page into `app`; `ui` holds the page's helpers (h, api,
/// utc, showErrors).
export async function statusPagesPage(app, ui) {
  const { h, api, showErrors } = ui;
  const websites = (await api("GET", "/websites")).data ?? [];
  const choices = h(
    "fieldset",
    { id: "page-websites" },
    h("legend", {}, "Websites (the name the public sees)"),
    websites.length
      ? websites.map((w) =>
          h(
            "label",
            { class: "inline" },
            h("input", { type: "checkbox", name: "website", value: w.id }),
            h("input", { name: `name-${w.id}`, value: w.name, "aria-label": `Public name of ${w.name}` }),
            h("span", { class: "muted" }, ` ${w.url}`),
          ),
        )
      : h("p", { class: "muted" }, "Add websites first."),
  );
  const form = h(
    "form",
    { class: "grid", id: "add-status-page", novalidate: true },
    h("label", {}, "Slug", h("input", { name: "slug", required: true, placeholder: "acme", pattern: "[a-z0-9-]{1,64}" }), h("span", { class: "error", "data-error-for": "slug" })),
    h("label", {}, "Title", h("input", { name: "title", required: true, placeholder: "Acme status" }), h("span", { class: "error", "data-error-for": "title" })),
    h("label", {}, "Description", h("input", { name: "description" }), h("span", { class: "error", "data-error-for": "description" })),
    h("label", {}, "Group", h("input", { name: "group", value: "Services" }), h("span", { class: "error", "data-error-for": "groups" })),
    choices,
    h("div", {}, h("button", { type: "submit" }, "Create page"), h("div", { class: "error", "data-error-for": "form" })),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const chosen = data.getAll("website").map((id) => ({ id, name: data.get(`name-${id}`) || "" }));
    const body = { slug: data.get("slug"), title: data.get("title"), groups: [{ name: data.get("group") || "Services", websites: chosen }] };
    if (data.get("description")) body.description = data.get("description");
    const response = await api("POST", "/status-pages", body);
    if (!response.ok) return showErrors(form, response);
    form.reset();
    await refreshPages(ui);
  });
  app.replaceChildren(
    h("section", {}, h("h1", {}, "Status pages"), h("p", { class: "muted" }, "Public pages, readable without a token at /status/<slug>: the websites you choose, under the names you give them, their uptime over 90 days and their incidents. Visitors can subscribe by email or follow the Atom feed."), form),
    h("section", {}, h("h2", {}, "Pages"), h("div", { id: "status-page-list" })),
  );
  await refreshPages(ui);
}

async function refreshPages(ui) {
  const { h, api } = ui;
  const list = document.getElementById("status-page-list");
  const pages = (await api("GET", "/status-pages")).data ?? [];
  if (!list) return;
  if (!pages.length) {
    list.replaceChildren(h("p", { class: "muted" }, "No status page yet."));
    return;
  }
  const sections = await Promise.all(pages.map((page) => pageSection(page, ui)));
  list.replaceChildren(...sections);
}

async function pageSection(page, ui) {
  const { h, api, utc, showErrors } = ui;
  const redraw = () => refreshPages(ui);
  const incidents = (await api("GET", `/status-pages/${page.slug}/incidents`)).data ?? [];
  const names = new Map(page.groups.flatMap((g) => g.websites.map((w) => [w.id, w.name])));
  const edit = h(
    "form",
    { class: "grid", novalidate: true, "data-slug": page.slug },
    h("label", {}, "Title", h("input", { name: "title", value: page.title }), h("span", { class: "error", "data-error-for": "title" })),
    h("label", {}, "Description", h("input", { name: "description", value: page.description ?? "" }), h("span", { class: "error", "data-error-for": "description" })),
    h("div", {}, h("button", { type: "submit", class: "secondary" }, "Save"), h("div", { class: "error", "data-error-for": "form" })),
  );
  edit.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(edit);
    const response = await api("PATCH", `/status-pages/${page.slug}`, { title: data.get("title"), description: data.get("description") });
    if (!response.ok) return showErrors(edit, response);
    await redraw();
  });
  const incidentItems = incidents.map((incident) => {
    const form = h(
      "form",
      { class: "grid incident-update", novalidate: true, "data-incident": incident.id },
      h("label", {}, "Status", h("select", { name: "status" }, STATUSES.map((s) => h("option", { value: s }, s))), h("span", { class: "error", "data-error-for": "status" })),
      h("label", {}, "Update", h("input", { name: "message", required: true, placeholder: "We are looking into it." }), h("span", { class: "error", "data-error-for": "message" })),
      h("label", {}, "Public title", h("input", { name: "title", value: incident.title ?? "" }), h("span", { class: "error", "data-error-for": "title" })),
      h("div", {}, h("button", { type: "submit" }, "Post update"), h("div", { class: "error", "data-error-for": "form" })),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const body = { status: data.get("status"), message: data.get("message") };
      if (data.get("title")) body.title = data.get("title");
      const response = await api("POST", `/status-pages/${page.slug}/incidents/${incident.id}/updates`, body);
      if (!response.ok) return showErrors(form, response);
      await redraw();
    });
    return h(
      "li",
      {},
      h("strong", {}, incident.title ?? `${names.get(incident.website_id) ?? "A website"} is down`),
      ` — ${incident.status}, since ${utc(incident.started_at)}`,
      incident.ended_at ? ` until ${utc(incident.ended_at)}` : "",
      h("ol", {}, incident.updates.map((u) => h("li", {}, `${u.status}: ${u.message} (${utc(u.posted_at)})`))),
      form,
    );
  });
  return h(
    "article",
    { class: "status-page", "data-slug": page.slug },
    h("h3", {}, page.title, " ", h("a", { href: page.public_path, target: "_blank", rel: "noopener" }, page.public_path)),
    h("p", { class: "muted" }, page.groups.map((g) => `${g.name}: ${g.websites.map((w) => w.name).join(", ") || "none"}`).join(" · ")),
    edit,
    h("h4", {}, "Incidents (90 days)"),
    incidents.length ? h("ul", { class: "incidents" }, incidentItems) : h("p", { class: "muted" }, "No incidents."),
    h("button", { type: "button", class: "danger", onclick: async () => { await api("DELETE", `/status-pages/${page.slug}`); await redraw(); } }, "Delete page"),
  );
}
