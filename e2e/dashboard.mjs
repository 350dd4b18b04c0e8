// The dashboard in headless Chromium against the running system: add a
// website through the form, see it checked, open it and see the chart, make
// it fail and see the downtime in the panel and on the chart, edit and
// remove it, and see the API's validation errors next to the fields; sign
// in with a token, see who changed what in the History panel, sign out;
// open the website's public status page while it is down (outage, the
// incident with its first update), after it recovered (operational, the
// day's bar showing the downtime), and with JavaScript disabled.
// Screenshots go to e2e/screenshots/.
import { launchBrowser } from "./browser.mjs";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";

const base = process.env.BASE_URL;
const target = process.env.TARGET_URL;
const admin = process.env.ADMIN_TOKEN;
assert.ok(base && target && admin, "BASE_URL, TARGET_URL and ADMIN_TOKEN must be set (e2e/run.sh sets them)");
mkdirSync("screenshots", { recursive: true });

const browser = await launchBrowser();
const problems = [];
let step = "start";
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // Chromium also logs every 4xx answer as "Failed to load resource"; the
  // validation errors the test provokes are meant, so only script errors count.
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push(`console: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error}`));
  page.on("dialog", (dialog) => dialog.accept());
  const shot = (name) => page.screenshot({ path: `screenshots/${name}.png`, fullPage: true });

  step = "the page is served with a strict Content-Security-Policy";
  const index = await fetch(`${base}/`);
  const csp = index.headers.get("content-security-policy") ?? "";
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /script-src[^;]*unsafe-inline/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(index.headers.get("x-content-type-options"), "nosniff");

  step = "signed out, the dashboard asks for a token";
  const created = await fetch(`${base}/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "e2e-writer", scope: "write" }),
  });
  assert.equal(created.status, 201, await created.clone().text());
  const { secret } = await created.json();
  await page.goto(`${base}/`);
  const signIn = page.locator("#sign-in");
  await signIn.waitFor({ timeout: 10000 });
  await shot("0-sign-in");

  step = "a wrong token is refused next to the field";
  await signIn.locator("input[name=token]").fill("wm_not-a-real-token-at-all");
  await signIn.locator("button[type=submit]").click();
  await signIn.locator('[data-error-for="token"]').filter({ hasText: /not valid/ }).waitFor({ timeout: 10000 });

  step = "a good token signs in to the overview";
  await signIn.locator("input[name=token]").fill(secret);
  await signIn.locator("button[type=submit]").click();
  await page.locator("#add-website").waitFor({ timeout: 10000 });
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "monitor_session");
  assert.ok(session && session.httpOnly && session.sameSite === "Strict", "an HttpOnly, SameSite=Strict session cookie");

  step = "an invalid URL shows the API's error next to the field";
  const form = page.locator("#add-website");
  await form.locator("input[name=url]").fill("not a url");
  await form.locator("input[name=name]").fill("Broken");
  await form.locator("button[type=submit]").click();
  const urlError = form.locator('[data-error-for="url"]');
  await urlError.filter({ hasText: /url/ }).waitFor({ timeout: 10000 });
  await shot("1-invalid-url");

  step = "a website added through the form is listed and checked";
  await form.locator("input[name=url]").fill(`${target}/status`);
  await form.locator("input[name=name]").fill("Shop e2e");
  await form.locator("input[name=interval_seconds]").fill("10");
  await form.locator("button[type=submit]").click();
  const row = page.locator("tr[data-website]", { hasText: "Shop e2e" });
  await row.waitFor({ timeout: 10000 });
  assert.equal(await urlError.textContent(), "", "the error is cleared after a successful add");
  await row.locator(".badge.up").waitFor({ timeout: 40000 });
  await shot("2-overview");

  step = "the website page shows a chart with points";
  await row.getByRole("link", { name: "Shop e2e" }).click();
  await page.waitForFunction(() => Number(document.querySelector("#chart")?.dataset.points ?? 0) > 0, null, { timeout: 40000 });
  assert.ok(await page.locator("#chart canvas").count(), "the chart is drawn");
  await page.locator("#uptime-status", { hasText: "No downtime recorded" }).waitFor({ timeout: 10000 });
  await shot("3-website");

  step = "a failing target shows up as downtime in the panel and on the chart";
  const set = await fetch(`${target}/set/500`);
  assert.ok(set.ok);
  await page.locator("#downtime-list tr.incident").first().waitFor({ timeout: 60000 });
  await page.waitForFunction(() => Number(document.querySelector("#chart")?.dataset.downtimes ?? 0) > 0, null, { timeout: 20000 });
  await page.locator("#uptime-status", { hasText: "Down for" }).waitFor({ timeout: 20000 });
  const incident = await page.locator("#downtime-list tr.incident").first().textContent();
  assert.match(incident, /http_status 500/);
  await page.selectOption("#days", "7");
  await page.waitForFunction(() => Number(document.querySelector("#chart")?.dataset.downtimes ?? 0) > 0, null, { timeout: 20000 });
  await shot("4-downtime");

  step = "a public status page shows the outage and the incident's first update";
  const adminApi = (method, path, body) =>
    fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: body ? JSON.stringify(body) : undefined,
    });
  const shop = ((await (await adminApi("GET", "/websites")).json()) ?? []).find((w) => w.name === "Shop e2e");
  assert.ok(shop, "the website is listed");
  const statusPage = await adminApi("POST", "/status-pages", {
    slug: "e2e",
    title: "E2E <status>",
    description: "Our services",
    groups: [{ name: "Web", websites: [{ id: shop.id, name: "Checkout" }] }],
  });
  assert.equal(statusPage.status, 201, await statusPage.clone().text());
  const publicPage = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // A fresh URL each time: the page may be cached for 30 s (max-age=30).
  const openStatus = async (on, expected) => {
    const deadline = Date.now() + 60000;
    for (;;) {
      await on.goto(`${base}/status/e2e?at=${Date.now()}`);
      if ((await on.locator("#overall").getAttribute("data-status")) === expected) return;
      assert.ok(Date.now() < deadline, `the page shows ${expected}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  };
  await openStatus(publicPage, "outage");
  const incidents = await (await adminApi("GET", "/status-pages/e2e/incidents")).json();
  assert.ok(incidents.length >= 1 && incidents[0].ongoing, JSON.stringify(incidents));
  const update = await adminApi("POST", `/status-pages/e2e/incidents/${incidents[0].id}/updates`, {
    status: "investigating",
    message: "We are looking into failed checkouts.",
    title: "Checkout failing",
  });
  assert.equal(update.status, 201, await update.clone().text());
  await openStatus(publicPage, "outage");
  for (let tries = 0; !(await publicPage.locator("#current article", { hasText: "Checkout failing" }).count()); tries++) {
    assert.ok(tries < 10, "the incident's title and update are shown");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await publicPage.goto(`${base}/status/e2e?at=${Date.now()}`);
  }
  const current = publicPage.locator("#current article", { hasText: "Checkout failing" });
  assert.match(await current.locator("ol.timeline li").first().textContent(), /Investigating — We are looking into failed checkouts\./);
  assert.match(await publicPage.locator("h1").textContent(), /E2E <status>/, "the title is text, not markup");
  const html = await publicPage.content();
  assert.ok(!html.includes(target) && !html.includes(admin), "no checked URL or token in the public page");
  await publicPage.screenshot({ path: "screenshots/10-status-outage.png", fullPage: true });

  step = "after recovery the page is operational and today's bar shows the downtime";
  assert.ok((await fetch(`${target}/set/200`)).ok);
  await openStatus(publicPage, "operational");
  const lastBars = await publicPage.locator(".bar i").evaluateAll((bars) => bars.slice(-2).map((b) => [b.className, b.title]));
  assert.ok(lastBars.some(([cls, title]) => ["b", "c", "d"].includes(cls) && /% up/.test(title)), JSON.stringify(lastBars));
  assert.ok(lastBars.some(([, title]) => title.includes("Checkout failing")), `the day's tooltip names the incident: ${JSON.stringify(lastBars)}`);
  await publicPage.locator("#past article", { hasText: "Checkout failing" }).waitFor({ timeout: 10000 });
  await publicPage.screenshot({ path: "screenshots/11-status-recovered.png", fullPage: true });
  await publicPage.close();
  // The rest of the script (and many.mjs) ran with the target failing.
  assert.ok((await fetch(`${target}/set/500`)).ok);

  step = "the status page is complete with JavaScript disabled";
  const noScript = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 390, height: 844 } });
  const plain = await noScript.newPage();
  await plain.goto(`${base}/status/e2e?at=${Date.now()}`);
  assert.equal(await plain.locator("#overall").getAttribute("data-status"), "operational");
  assert.equal(await plain.locator(".bar i").count(), 90, "the 90-day bar");
  await plain.locator("#past article", { hasText: "Checkout failing" }).waitFor({ timeout: 10000 });
  await plain.locator("#subscribe form input[type=email]").waitFor({ timeout: 10000 });
  await plain.screenshot({ path: "screenshots/12-status-no-javascript.png", fullPage: true });
  await noScript.close();

  step = "the dashboard's Status pages page lists the page and posts an update";
  await page.goto(`${base}/#/status-pages`);
  const managed = page.locator('article.status-page[data-slug="e2e"]');
  await managed.waitFor({ timeout: 10000 });
  const updateForm = managed.locator("form.incident-update").first();
  await updateForm.locator("select[name=status]").selectOption("resolved");
  await updateForm.locator("input[name=message]").fill("Fixed: a full disk.");
  await updateForm.getByRole("button", { name: "Post update" }).click();
  await page.locator('article.status-page[data-slug="e2e"] ol li', { hasText: "resolved: Fixed: a full disk." }).waitFor({ timeout: 10000 });
  await shot("13-status-pages");

  step = "the overview is readable at phone width";
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/#/`);
  await row.waitFor({ timeout: 10000 });
  await shot("5-overview-phone");
  await page.setViewportSize({ width: 1280, height: 900 });

  step = "user-provided text stays text";
  await form.locator("input[name=url]").fill(`${target}/status`);
  await form.locator("input[name=name]").fill("<img src=x onerror=window.__xss=1>");
  await form.locator("button[type=submit]").click();
  const hostile = page.locator("tr[data-website]", { hasText: "<img src=x onerror=window.__xss=1>" });
  await hostile.waitFor({ timeout: 10000 });
  assert.equal(await page.evaluate(() => window.__xss), undefined, "no script ran");
  assert.equal(await hostile.locator("img").count(), 0, "no element was made from the name");
  await hostile.getByRole("button", { name: "Remove" }).click();
  await hostile.waitFor({ state: "detached", timeout: 10000 });

  step = "a website is edited and removed from the overview";
  await row.getByRole("button", { name: "Edit" }).click();
  const editing = page.locator("tr.editing form");
  await editing.locator("input[name=interval_seconds]").fill("5");
  await editing.getByRole("button", { name: "Save" }).click();
  await editing.locator('[data-error-for="interval_seconds"]').filter({ hasText: /interval_seconds/ }).waitFor({ timeout: 10000 });
  await editing.locator("input[name=interval_seconds]").fill("10");
  await editing.locator("input[name=name]").fill("Shop renamed");
  await editing.getByRole("button", { name: "Save" }).click();
  const renamed = page.locator("tr[data-website]", { hasText: "Shop renamed" });
  await renamed.waitFor({ timeout: 10000 });

  step = "the History panel shows the change and who made it";
  await renamed.getByRole("link", { name: "Shop renamed" }).click();
  const history = page.locator("#history tbody tr", { hasText: "WebsiteUpdated" }).first();
  await history.waitFor({ timeout: 10000 });
  assert.equal(await history.locator("td.actor").textContent(), "e2e-writer");
  assert.match(await history.textContent(), /Shop e2e → Shop renamed/);
  await shot("7-history");

  step = "the website page explains why nobody was alerted of the outage";
  await page.goto(`${base}/#/`);
  await renamed.getByRole("link", { name: "Shop renamed" }).click();
  await page.locator("#alerts tr", { hasText: "SiteDown" }).first().waitFor({ timeout: 20000 });
  assert.match(await page.locator("#alerts tr", { hasText: "SiteDown" }).first().textContent(), /no: no destination/);
  await shot("8-alerts");

  step = "the website is paused and resumed, and a maintenance window planned and ended";
  await page.getByRole("button", { name: "Pause checks" }).click();
  await page.locator("h1 .badge.paused").waitFor({ timeout: 10000 });
  await page.getByRole("button", { name: "Resume checks" }).click();
  await page.getByRole("button", { name: "Pause checks" }).waitFor({ timeout: 10000 });
  const planForm = page.locator("#add-maintenance");
  await planForm.locator("input[name=name]").fill("Upgrade");
  await planForm.getByRole("button", { name: "Plan maintenance" }).click();
  await planForm.locator('[data-error-for="starts_at"]').filter({ hasText: /starts_at/ }).waitFor({ timeout: 10000 });
  await planForm.locator("input[name=starts_at]").fill(new Date(Date.now() - 60000).toISOString().slice(0, 16));
  await planForm.getByRole("button", { name: "Plan maintenance" }).click();
  const windowRow = page.locator("#maintenance tr", { hasText: "Upgrade" });
  await windowRow.locator(".badge.maintenance").waitFor({ timeout: 10000 });
  await shot("8b-maintenance");
  await windowRow.getByRole("button", { name: "End now" }).click();
  await windowRow.locator(".badge.maintenance").waitFor({ state: "detached", timeout: 10000 });

  step = "a channel is added, its signing secret shown once, a test message sent and logged";
  await page.goto(`${base}/#/channels`);
  const channelForm = page.locator("#add-channel");
  await channelForm.waitFor({ timeout: 10000 });
  await channelForm.locator("input[name=name]").fill("Ops hook");
  await channelForm.locator("select[name=type]").selectOption("webhook");
  await channelForm.locator("input[name=url]").fill("not a url");
  await channelForm.getByRole("button", { name: "Add channel" }).click();
  await channelForm.locator('[data-error-for="url"]').filter({ hasText: /url/ }).waitFor({ timeout: 10000 });
  await channelForm.locator("input[name=url]").fill(`${target}/hook`);
  await channelForm.getByRole("button", { name: "Add channel" }).click();
  await page.locator("#new-secret", { hasText: /^whsec_/ }).waitFor({ timeout: 10000 });
  const channelRow = page.locator("#channels tr", { hasText: "Ops hook" });
  await channelRow.getByRole("button", { name: "Send test" }).click();
  await page.locator("#deliveries tr", { hasText: "test" }).waitFor({ timeout: 20000 });
  await shot("9-channels");
  await channelRow.getByRole("button", { name: "Delete" }).click();
  await channelRow.waitFor({ state: "detached", timeout: 10000 });

  await page.goto(`${base}/#/`);
  await renamed.waitFor({ timeout: 10000 });
  await renamed.getByRole("button", { name: "Remove" }).click();
  await renamed.waitFor({ state: "detached", timeout: 10000 });

  step = "the API docs load offline";
  await page.goto(`${base}/docs`);
  await page.locator(".swagger-ui .opblock").first().waitFor({ timeout: 20000 });
  await shot("6-docs");

  step = "signing out returns to the sign-in page and ends the session";
  await page.goto(`${base}/#/`);
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#sign-in").waitFor({ timeout: 10000 });
  assert.ok(!(await page.context().cookies()).some((c) => c.name === "monitor_session" && c.value), "the cookie is cleared");
  await page.reload();
  await page.locator("#sign-in").waitFor({ timeout: 10000 });

  assert.deepEqual(problems, [], "no console errors");
  console.log("browser tests passed; screenshots in e2e/screenshots/");
} catch (error) {
  console.error(`browser test failed at: ${step}\n${error.stack ?? error}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
