// The overview's first render, measured for the read benchmark
// (services/src/bin/read_bench.rs): signs in to BASE_URL with TOKEN, then
// loads the overview with the browser's cache off, RUNS times, and prints
// one JSON line: the time from navigation to a full page of rows (ROWS,
// default 50) and the counts on screen, and the bytes transferred (headers
// and bodies as sent, compressed where they were) of each load.
import { launchBrowser } from "./browser.mjs";

const base = process.env.BASE_URL;
const token = process.env.TOKEN;
const runs = Number(process.env.RUNS ?? 5);
const wantedRows = Number(process.env.ROWS ?? 50);
if (!base || !token) {
  console.error("BASE_URL and TOKEN must be set");
  process.exit(2);
}

const browser = await launchBrowser();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${base}/`);
  await page.locator("#sign-in input[name=token]").fill(token);
  await page.locator("#sign-in button[type=submit]").click();
  await page.locator("#overview-table").waitFor({ timeout: 30000 });

  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  let bytes = 0;
  cdp.on("Network.loadingFinished", (event) => {
    bytes += event.encodedDataLength;
  });

  const rows = page.locator("#websites tr[data-website]");
  const times = [];
  const transferred = [];
  for (let run = 0; run < runs; run++) {
    bytes = 0;
    const started = performance.now();
    await page.goto(`${base}/#/`);
    await page.reload();
    await rows.nth(wantedRows - 1).waitFor({ timeout: 30000 });
    await page.locator('[data-count="up"]').waitFor({ timeout: 30000 });
    times.push(performance.now() - started);
    // What the page is still fetching when it shows (icons, a late call)
    // is part of its weight.
    await page.waitForLoadState("networkidle");
    transferred.push(bytes);
  }
  console.log(JSON.stringify({ times_ms: times, bytes: transferred }));
} finally {
  await browser.close();
}
