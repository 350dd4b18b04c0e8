// The overview with many websites (MANY_WEBSITES, default 10000: about 50 s
// to create on two cores), created through the API: the first render is
// fast (FIRST_RENDER_MS, default 3000) and shows one page, search and the
// status filter narrow it (and live in the URL), Next pages on, and a
// search result opens the website's page. Run after dashboard.mjs on the
// same system (e2e/run.sh).
import { launchBrowser } from "./browser.mjs";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";

const base = process.env.BASE_URL;
const target = process.env.TARGET_URL;
const admin = process.env.ADMIN_TOKEN;
const count = Number(process.env.MANY_WEBSITES ?? 10000);
const firstRenderMs = Number(process.env.FIRST_RENDER_MS ?? 3000);
assert.ok(base && target && admin, "BASE_URL, TARGET_URL and ADMIN_TOKEN must be set (e2e/run.sh sets them)");
mkdirSync("screenshots", { recursive: true });

const name = (i) => `Many ${String(i).padStart(5, "0")}`;

/// Creates the websites, 16 requests at a time: every tenth on a port
/// nothing listens on (down), the rest on the target (up), checked daily.
async function createWebsites() {
  const started = Date.now();
  let next = 0;
  async function lane() {
    while (next < count) {
      const i = next++;
      const url = i % 10 === 0 ? `http://127.0.0.1:9/down/${i}` : `${target}/status?site=${i}`;
      const response = await fetch(`${base}/websites`, {
        method: "POST",
        headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
        body: JSON.stringify({ url, name: name(i), interval_seconds: 86400 }),
      });
      assert.equal(response.status, 201, await response.text());
    }
  }
  await Promise.all(Array.from({ length: 16 }, lane));
  console.log(`created ${count} websites in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

await createWebsites();
const browser = await launchBrowser();
const problems = [];
let step = "start";
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error}`));
  const rows = page.locator("#websites tr[data-website]");

  step = "sign in";
  await page.goto(`${base}/`);
  await page.locator("#sign-in input[name=token]").fill(admin);
  await page.locator("#sign-in button[type=submit]").click();
  await page.locator("#overview-table").waitFor({ timeout: 10000 });

  step = `the first render with ${count} websites shows one page and the counts`;
  let bytes = 0;
  page.on("response", async (response) => {
    bytes += Number((await response.allHeaders())["content-length"] ?? 0);
  });
  const started = Date.now();
  await page.goto(`${base}/#/`);
  await page.reload();
  await rows.nth(49).waitFor({ timeout: firstRenderMs * 2 });
  await page.locator('[data-count="up"]').waitFor();
  const elapsed = Date.now() - started;
  console.log(`first render: ${elapsed} ms, ${(bytes / 1024).toFixed(0)} KiB with a length`);
  assert.ok(elapsed < firstRenderMs, `first render took ${elapsed} ms`);
  assert.equal(await rows.count(), 50, "one page of 50");
  const total = await page.locator(".count .big").last().textContent();
  assert.ok(Number(total) >= count, `the summary counts every website (${total})`);
  await page.screenshot({ path: "screenshots/8-many-overview.png" });

  step = "the table is labelled for screen readers";
  assert.ok(await page.locator("#overview-table caption").count(), "a caption");
  assert.equal(await page.locator("#overview-table thead th[scope=col]").count(), 7);
  assert.equal(await page.locator('#overview-table th[aria-sort="ascending"][data-sort="status"]').count(), 1);
  await page.getByLabel("Search", { exact: true }).waitFor();
  await page.getByLabel("Status", { exact: true }).waitFor();
  await page.getByLabel("Sort by", { exact: true }).waitFor();

  step = "Next shows the following page";
  const firstIds = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.website));
  await page.locator("#next").click();
  await page.waitForFunction((first) => {
    const ids = [...document.querySelectorAll("#websites tr[data-website]")].map((tr) => tr.dataset.website);
    return ids.length === 50 && !ids.some((id) => first.includes(id));
  }, firstIds, { timeout: 10000 });
  assert.match(page.url(), /cursor=/);
  await page.locator("#previous").click();
  await page.waitForFunction((first) => document.querySelector("#websites tr[data-website]")?.dataset.website === first[0], firstIds, { timeout: 10000 });

  step = "search narrows the table and is in the URL";
  const wanted = name(Math.floor(count / 2) + 1);
  await page.getByLabel("Search", { exact: true }).fill(wanted.toLowerCase());
  await page.waitForFunction(() => document.querySelectorAll("#websites tr[data-website]").length === 1, null, { timeout: 10000 });
  assert.equal(await rows.first().getByRole("link").textContent(), wanted);
  assert.match(page.url(), /q=many/);

  step = "a search result opens the website's page";
  await rows.first().getByRole("link", { name: wanted }).click();
  await page.locator("h1", { hasText: wanted }).waitFor({ timeout: 10000 });
  await page.goBack();
  await page.waitForFunction(() => document.querySelectorAll("#websites tr[data-website]").length === 1, null, { timeout: 10000 });
  assert.equal(await page.getByLabel("Search", { exact: true }).inputValue(), wanted.toLowerCase(), "the search is restored from the URL");

  step = "the status filter shows only websites down, down first by default";
  await page.getByLabel("Search", { exact: true }).fill("");
  await page.getByLabel("Status", { exact: true }).selectOption("down");
  await page.waitForFunction(
    () => {
      const trs = [...document.querySelectorAll("#websites tr[data-website]")];
      return trs.length > 0 && trs.every((tr) => tr.dataset.status === "down") && !location.hash.includes("q=");
    },
    null,
    { timeout: 30000 },
  );
  assert.match(page.url(), /status=down/);
  await page.screenshot({ path: "screenshots/9-many-down.png" });

  step = "a linked view opens as it was";
  await page.goto(`${base}/#/?q=${encodeURIComponent(wanted)}&sort=name`);
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll("#websites tr[data-website]").length === 1, null, { timeout: 10000 });
  assert.equal(await page.getByLabel("Sort by", { exact: true }).inputValue(), "name");
  assert.equal(await page.locator('#overview-table th[aria-sort][data-sort="name"]').count(), 1);

  assert.deepEqual(problems, [], "no console errors");
  console.log(`browser tests with ${count} websites passed`);
} catch (error) {
  console.error(`browser test failed at: ${step}\n${error.stack ?? error}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
