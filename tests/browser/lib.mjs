// Helpers for the browser tests: the API from node (to set up polls and read what the
// browser did), render jobs and their files, QR decoding, and Chromium contexts that record
// every page error, console error and request to another origin.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import AdmZip from "adm-zip";
import jsQR from "jsqr";
import { chromium } from "playwright-core";
import { PNG } from "pngjs";

export const BASE = process.env.TALLY_BASE_URL;
if (!BASE) throw new Error("TALLY_BASE_URL is not set: run the tests with `node run.mjs`");

export const SCREENSHOTS = path.join(path.dirname(fileURLToPath(import.meta.url)), "screenshots");
mkdirSync(SCREENSHOTS, { recursive: true });

export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
export const DESKTOP = { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 };

// The flags CI's Chromium needs: no sandbox (containers), no GPU, nothing that phones home.
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
  "--no-first-run", "--disable-component-update", "--disable-sync",
];

export async function api(method, route, { token, invite, body, headers = {}, redirect } = {}) {
  const h = { accept: "application/json", ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (invite) h.authorization = `Invite ${invite}`;
  if (body !== undefined) h["content-type"] = "application/json";
  const response = await fetch(BASE + route, {
    method, headers: h, redirect, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { status: response.status, headers: response.headers, body: json };
}

// Short but unique, so that the tests can also run against a server that already has data.
let accounts = 0;
export function uniqueEmail(who) {
  accounts += 1;
  return `${who}.${(Date.now() % 1e6).toString(36)}${process.pid % 100}${accounts}@example.com`;
}

export const PASSWORD = "correct horse battery";

// Registers and signs in an organiser through the API; returns the email and access token.
export async function organiser(who = "organiser") {
  const email = uniqueEmail(who);
  const created = await api("POST", "/v1/auth/register", { body: { email, password: PASSWORD } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const login = await api("POST", "/v1/auth/login", { body: { email, password: PASSWORD } });
  assert.equal(login.status, 200, JSON.stringify(login.body));
  return { email, token: login.body.access_token };
}

export async function createPoll(token, poll) {
  const created = await api("POST", "/v1/polls", { token, body: poll });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return created.body;
}

export async function waitForJob(token, id, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await api("GET", `/v1/jobs/${id}`, { token });
    assert.equal(job.status, 200, JSON.stringify(job.body));
    if (job.body.status === "done") return job.body;
    assert.notEqual(job.body.status, "failed", JSON.stringify(job.body));
    assert.ok(Date.now() < deadline, `job ${id} not done in time: ${JSON.stringify(job.body)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// The job's file, fetched the way a script without CORS cannot: following the redirect to
// the presigned URL.
export async function downloadJob(token, id) {
  const response = await fetch(`${BASE}/v1/jobs/${id}/download`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200, `download: ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

export function decodeQr(png) {
  const image = PNG.sync.read(png);
  const code = jsQR(new Uint8ClampedArray(image.data), image.width, image.height);
  assert.ok(code, "no QR code found in the image");
  return code.data;
}

// Invites `names` to a poll and returns each guest's invite URL, decoded from their card in
// the job's ZIP, by name.
export async function inviteGuests(token, pollId, names) {
  const started = await api("POST", `/v1/polls/${pollId}/invites`, { token, body: { guests: names.map((name) => ({ name })) } });
  assert.equal(started.status, 202, JSON.stringify(started.body));
  await waitForJob(token, started.body.id);
  return cardUrls(await downloadJob(token, started.body.id), names);
}

export function cardUrls(zipBytes, names) {
  const entries = new AdmZip(zipBytes).getEntries().filter((e) => e.entryName.endsWith(".png"));
  entries.sort((a, b) => a.entryName.localeCompare(b.entryName));
  assert.equal(entries.length, names.length, entries.map((e) => e.entryName).join(", "));
  // Cards are numbered in the order the guests were given.
  return new Map(names.map((name, i) => [name, decodeQr(entries[i].getData())]));
}

// A fresh Chromium with its own profile. `problems` collects what a user would not see but
// a page must not do: uncaught errors, console errors (CSP violations among them, and 5xx
// answers) and requests to any origin but the server's and those allowed (the file store).
export async function browser(device, { allowOrigins = [] } = {}) {
  const profile = mkdtempSync(path.join(tmpdir(), "tally-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
    acceptDownloads: true,
    ...device,
  });
  const problems = [];
  const origins = new Set([new URL(BASE).origin, ...allowOrigins]);
  const watch = (page) => {
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      // Chromium logs every 4xx answer to a fetch as an error; the pages handle those (an
      // unknown invite, a second ballot), so only other errors count.
      if (m.type() === "error" && !/status of 4\d\d /.test(m.text())) problems.push(`console error: ${m.text()}`);
    });
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (!["http:", "https:"].includes(url.protocol)) return;
      if (!origins.has(url.origin)) problems.push(`request to another origin: ${r.url()}`);
    });
  };
  context.pages().forEach(watch);
  context.on("page", watch);
  const page = context.pages()[0] || (await context.newPage());
  return {
    context,
    page,
    problems,
    allow: (origin) => origins.add(origin),
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export async function screenshot(page, name) {
  await page.screenshot({ path: path.join(SCREENSHOTS, name), fullPage: true, animations: "disabled" });
}

// Every page response carries the security headers.
export function assertSecurityHeaders(headers) {
  const csp = headers["content-security-policy"] || "";
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(headers["x-content-type-options"], "nosniff");
  assert.equal(headers["referrer-policy"], "no-referrer");
}
