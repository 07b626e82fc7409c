// The portal's first screen in headless Chromium: prints {"ready_ms", "js_bytes", "js_files"} as one JSON line.
//   node benches/portal_page.mjs http://127.0.0.1:PORT
// Uses playwright-core from tests/browser/node_modules (cd tests/browser && npm ci) and Debian's chromium.
import { createRequire } from "node:module";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(join(dirname(fileURLToPath(import.meta.url)), "..", "tests", "browser", "package.json"));
const { chromium } = require("playwright-core");
const base = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const runs = [];
let js = [];
for (let i = 0; i < 5; i++) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const seen = [];
  page.on("response", async (r) => { if (r.url().endsWith(".js")) seen.push(Number((await r.allHeaders())["content-length"] || 0)); });
  const t = Date.now();
  await page.goto(`${base}/portal/`);
  await page.waitForSelector("#schema-tree details.table");
  runs.push(Date.now() - t);
  js = seen;
  await context.close();
}
await browser.close();
runs.sort((a, b) => a - b);
console.log(JSON.stringify({ ready_ms: runs[2], js_bytes: js.reduce((a, b) => a + b, 0), js_files: js.length }));
