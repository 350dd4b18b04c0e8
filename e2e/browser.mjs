// The browser every browser test drives: the system's Chromium (CHROMIUM,
// default /usr/bin/chromium), headless. A launch that fails is tried again,
// up to three times: Chromium has been seen to crash (SIGSEGV) while
// starting, before its first page, where it had started a minute before and
// started again in a later run.
import { chromium } from "playwright-core";

const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"];
const ATTEMPTS = 3;

export async function launchBrowser() {
  let failure;
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    try {
      return await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ARGS });
    } catch (error) {
      failure = error;
      console.error(`chromium did not start (attempt ${attempt} of ${ATTEMPTS}): ${String(error.message).split("\n")[0]}`);
    }
  }
  throw failure;
}
