// Logging in to the portal in headless Chromium, against a real `skyshard serve --auth required` (issue 34, items 1,
// 2 and 4): a wrong password is answered in the form (no browser password dialog, no held request) and a correct
// retry in the same tab logs in; a session ended elsewhere does not lock the user out (the page loads, says so, and
// offers the form); the notebook snippet of a logged-in user carries a token and, run by Python, reads the job's
// rows, which are checked against DuckDB over the table's own chunk files.
//
//   SKYSHARD=path/to/skyshard node --test --test-concurrency=1 tests/browser/login.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const skyshard = process.env.SKYSHARD || join(process.env.CARGO_TARGET_DIR || join(process.env.HOME, ".cache/skyshard-target"), "debug/skyshard");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const PASSWORD = "ada's long password";

let server, base, dir, browser;
const pageErrors = [];

function run(...args) {
  return execFileSync(skyshard, args, { encoding: "utf8", timeout: 300000 });
}

/** A new browser tab of its own (cookies included); page errors are collected. */
async function newPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  // A Basic challenge reaching the browser shows as a dialog or an auth request: record either.
  page.on("dialog", (d) => { pageErrors.push(`dialog: ${d.message()}`); d.dismiss(); });
  return page;
}

/** A request as a program makes it (node's fetch adds Sec-Fetch-Mode like a browser): {status, headers}. */
function raw(url, { method = "GET", headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, timeout: 60000 }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers }));
    });
    req.on("timeout", () => req.destroy(new Error(`no answer from ${url}`)));
    req.on("error", reject);
    req.end();
  });
}

async function login(page, password) {
  await page.fill("#login input[name=username]", "ada");
  await page.fill("#login input[name=password]", password);
  await page.click("#login button[type=submit]");
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "skyshard-login-"));
  run("gen", "--rows", "3000", "--out", join(dir, "rel"));
  run("ingest", "--data-dir", join(dir, "data"), "--table", "sky.object", "--input", join(dir, "rel/object.parquet"),
    "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "500", "--quiet");
  run("user", "add", "--data-dir", join(dir, "data"), "ada");
  execFileSync(skyshard, ["user", "passwd", "--data-dir", join(dir, "data"), "ada"], { input: `${PASSWORD}\n`, timeout: 60000 });
  server = spawn(skyshard, ["serve", "--data-dir", join(dir, "data"), "--port", "0", "--workers", "2", "--auth", "required",
    "--jobs-dir", join(dir, "jobs")], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the service did not start in 180 s:\n${out}`)), 180000);
    const seen = (d) => {
      out += d;
      const m = out.match(/TAP service at (http:\/\/127\.0\.0\.1:\d+)\/tap/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    server.stdout.on("data", seen);
    server.stderr.on("data", seen);
    server.on("exit", (code) => reject(new Error(`the service exited (${code}):\n${out}`)));
  });
  browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox", "--disable-gpu", "--no-first-run"] });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGKILL");
  if (dir) rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(pageErrors, [], "the page threw or the browser showed a dialog");
});

test("a wrong password is answered in the form, without a Basic challenge, and a retry in the same tab logs in", async () => {
  const page = await newPage();
  const challenges = [];
  page.on("response", (r) => {
    const h = r.headers()["www-authenticate"];
    if (h) challenges.push(`${r.url()}: ${h}`);
  });
  await page.goto(`${base}/portal/`);
  await page.waitForSelector("#login:not([hidden])");
  await login(page, "not the password");
  await page.waitForFunction(() => document.getElementById("login-error").textContent.length > 0);
  assert.match(await page.textContent("#login-error"), /wrong user name or password/);
  assert.ok(challenges.length > 0, "the refused login and the refused /api/v1/me say how to log in");
  for (const c of challenges) assert.doesNotMatch(c, /Basic/, "a Basic challenge to the page's own request");
  await login(page, PASSWORD);
  await page.waitForFunction(() => /ada/.test(document.getElementById("who").textContent));
  assert.match(await page.textContent("#who"), /ada\s+Log out/);
  // A program without browser headers still gets every challenge, Basic among them (TOPCAT answers it).
  const bare = await raw(`${base}/tap/sync?LANG=ADQL&QUERY=SELECT+1+AS+x+FROM+sky.object`);
  assert.equal(bare.status, 401);
  assert.match(bare.headers["www-authenticate"], /Basic realm/);
  await page.context().close();
});

test("a session ended elsewhere leaves the portal usable: it loads, says so, and the form logs in again", async () => {
  const page = await newPage();
  await page.goto(`${base}/portal/`);
  await page.waitForSelector("#login:not([hidden])");
  await login(page, PASSWORD);
  await page.waitForFunction(() => /ada/.test(document.getElementById("who").textContent));
  const cookie = (await page.context().cookies()).find((c) => c.name === "SESSION");
  assert.ok(cookie, "the login set the session cookie");
  // Another tab logs out: the session's token is revoked on the service, this tab still holds the cookie.
  const out = await raw(`${base}/tap/logout`, { method: "POST", headers: { Cookie: `SESSION=${cookie.value}` } });
  assert.equal(out.status, 200);
  // The same stale cookie from a program is still a 401 on an open path too (it chose those credentials).
  const program = await raw(`${base}/tap/capabilities`, { headers: { Cookie: `SESSION=${cookie.value}` } });
  assert.equal(program.status, 401);
  const page200 = await page.goto(`${base}/portal/`);
  assert.equal(page200.status(), 200, "the portal's own page is served whatever the cookie");
  await page.waitForSelector("#session-ended");
  assert.match(await page.textContent("#session-ended"), /session has ended/);
  await page.waitForSelector("#login:not([hidden])");
  assert.equal((await page.context().cookies()).find((c) => c.name === "SESSION"), undefined, "the stale cookie is cleared");
  await login(page, PASSWORD);
  await page.waitForFunction(() => /ada/.test(document.getElementById("who").textContent));
  await page.context().close();
});

test("a logged-in user's notebook snippet carries a token and reads the job's rows in Python", async () => {
  const page = await newPage();
  await page.goto(`${base}/portal/`);
  await page.waitForSelector("#login:not([hidden])");
  await login(page, PASSWORD);
  await page.waitForFunction(() => document.body.dataset.ready && /ada/.test(document.getElementById("who").textContent));
  await page.evaluate(() => window.portal.editor.setText("SELECT id, ra, dec FROM sky.object WHERE dec > 30"));
  await page.click("#run");
  await page.waitForFunction(() => window.portal.job?.phase === "COMPLETED", null, { timeout: 120000 });
  await page.click("button[data-tab=python]");
  await page.waitForFunction(() => /Bearer sky_/.test(document.getElementById("python-snippet").textContent));
  const snippet = await page.textContent("#python-snippet");
  assert.doesNotMatch(snippet, /_session/, "the snippet uses pyvo's public API only");
  const out = execFileSync("python3", ["-c", `${snippet}\nprint("ROWS", len(df), int(df["id"].sum()))`], { encoding: "utf8", timeout: 120000 });
  const line = out.split("\n").find((l) => l.startsWith("ROWS "));
  const oracle = execFileSync("python3", ["-c", `
import duckdb, glob, os
files = [f for f in glob.glob(os.path.join(${JSON.stringify(join(dir, "data"))}, "tables", "sky.object", "*", "chunks", "*.parquet")) if not f.endswith(".overlap.parquet")]
n, s = duckdb.connect().execute(f"SELECT COUNT(*), SUM(id) FROM read_parquet({files!r}) WHERE dec > 30").fetchone()
print("ROWS", n, int(s))
`], { encoding: "utf8", timeout: 120000 }).trim();
  assert.ok(!oracle.startsWith("ROWS 0 "), "the oracle found rows");
  assert.equal(line, oracle);
  // The token is a notebook token of ada's (listed, revocable), not the session's.
  const token = snippet.match(/Bearer (sky_[0-9a-f]+_[0-9a-f]+)/)[1];
  const cookie = (await page.context().cookies()).find((c) => c.name === "SESSION");
  assert.notEqual(token, cookie.value);
  assert.ok(run("token", "list", "--data-dir", join(dir, "data")).includes(token.slice(4, 20)));
  // Another site's page cannot make one.
  const foreign = await raw(`${base}/api/v1/tokens`, { method: "POST", headers: { Cookie: `SESSION=${cookie.value}`, Origin: "https://evil.example" } });
  assert.equal(foreign.status, 403);
  // Nor the notebook token itself (a leaked notebook must not renew its token for ever); the session can.
  const renew = await raw(`${base}/api/v1/tokens`, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  assert.equal(renew.status, 403);
  const again = await raw(`${base}/api/v1/tokens`, { method: "POST", headers: { Cookie: `SESSION=${cookie.value}` } });
  assert.equal(again.status, 200);
  await page.context().close();
});
