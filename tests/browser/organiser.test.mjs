// The organiser's page: sign up, create a poll, invite 200 guests, watch the render job's bar
// reach 100 %, download the ZIP, and watch the results chart follow the votes.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import AdmZip from "adm-zip";
import {
  BASE, DESKTOP, PASSWORD, PHONE, api, assertSecurityHeaders, browser, decodeQr, screenshot, uniqueEmail,
} from "./lib.mjs";

const QUESTION = "Where shall we hold the summer party?";
const EVENT = "Summer party 2026";
const GUESTS = Array.from({ length: 200 }, (_, i) => `Guest ${String(i + 1).padStart(3, "0")}`);
const email = uniqueEmail("organiser");
let desktop;
let state = {};

before(async () => {
  desktop = await browser(DESKTOP);
});

after(async () => {
  await desktop?.close();
});

async function signIn(page, button = "Sign in") {
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: button }).click();
  await page.getByRole("heading", { level: 1, name: "My polls" }).waitFor();
}

test("an organiser creates an account and a poll; the tokens stay out of URLs and local storage", async () => {
  const { page } = desktop;
  const response = await page.goto(BASE + "/");
  assert.equal(response.status(), 200);
  assertSecurityHeaders(response.headers());
  await page.getByRole("heading", { name: "Sign in to Tally" }).waitFor();
  await signIn(page, "Create account");
  await page.getByText("No polls yet").waitFor();
  await page.getByText(email).waitFor();

  await page.getByLabel("Question").fill(QUESTION);
  await page.getByLabel("Options").fill("Garden\nRooftop\nBoat");
  await page.getByLabel("Who can vote").selectOption("invite");
  await page.getByLabel("Event name").fill(EVENT);
  await page.getByRole("button", { name: "Create poll" }).click();
  await page.getByRole("heading", { level: 1, name: QUESTION }).waitFor();
  state.pollId = decodeURIComponent(new URL(page.url()).hash.split("/")[2]);
  // The event name the cards will print is the poll's, and its page shows it.
  assert.equal(await page.locator("#event").textContent(), EVENT);

  const storage = await page.evaluate(() => ({
    local: localStorage.length,
    session: sessionStorage.getItem("tally.session"),
    href: location.href,
  }));
  assert.equal(storage.local, 0, "nothing in local storage");
  const tokens = JSON.parse(storage.session);
  assert.ok(tokens.access_token && tokens.refresh_token, "the session is in session storage");
  assert.ok(!storage.href.includes(tokens.access_token) && !storage.href.includes(tokens.refresh_token));
  state.token = tokens.access_token;
  const stored = await api("GET", `/v1/polls/${state.pollId}`, { token: state.token });
  assert.equal(stored.body.event_name, EVENT);
  assert.deepEqual(desktop.problems, []);
});

test("an organiser invites 200 guests, watches the bar reach 100 % and downloads the ZIP", async () => {
  assert.ok(state.pollId, "needs the poll of the previous test");
  const { page } = desktop;
  await page.getByLabel("Guest names").fill(GUESTS.join("\n"));
  await page.getByText("200 guests").waitFor();

  // Every value the bar shows, recorded in the page as it changes.
  await page.evaluate(() => {
    window.seen = [];
    new MutationObserver((changes) => {
      for (const c of changes) window.seen.push({ value: Number(c.target.getAttribute("aria-valuenow")), text: document.body.innerText });
    }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ["aria-valuenow"] });
  });
  const started = Date.now();
  await page.getByRole("button", { name: "Make invite cards" }).click();
  await page.getByRole("heading", { level: 1, name: "Invite cards" }).waitFor();
  state.jobId = new URL(page.url()).hash.split("/")[2];
  const bar = page.getByRole("progressbar", { name: "Invite cards" });
  // A picture of the bar on its way, with the time left, when the job is slow enough to catch
  // (on a fast machine it may finish first; the test does not depend on it).
  const caught = await page.waitForFunction(() => {
    const value = Number(document.querySelector("[role=progressbar]")?.getAttribute("aria-valuenow"));
    if (value === 100) return "done";
    return value > 0 && /About \d+ (s|min) left/.test(document.body.innerText) ? "running" : false;
  }, null, { timeout: 120_000, polling: "raf" });
  if ((await caught.jsonValue()) === "running") await screenshot(page, "organiser-job-running-desktop.png");
  await page.waitForFunction(() => document.querySelector("[role=progressbar]")?.getAttribute("aria-valuenow") === "100", null, { timeout: 120_000, polling: 50 });
  const download = page.getByRole("button", { name: "Download the ZIP" });
  await download.waitFor();
  const seconds = (Date.now() - started) / 1000;

  const observed = await page.evaluate(() => window.seen);
  const seen = observed.map((s) => s.value);
  // While it ran, the page said how far it was and how long is left (or that it is still
  // estimating, when the first sample has no rate yet).
  const running = observed.filter((s) => s.value > 0 && s.value < 100);
  for (const s of running) assert.match(s.text, /\d+ of 200 cards[\s\S]*(About \d+ (s|min) left|Estimating time left)/);
  // The page follows the job's stages: rendering fills the bar to three quarters (the
  // server's rendering share), bundling the ZIP the rest with its own count, and once the
  // page says it is bundling it never goes back to rendering.
  let bundlingSeen = false;
  for (const s of running) {
    if (/bundling the ZIP/.test(s.text)) {
      bundlingSeen = true;
      assert.ok(s.value >= 75, `bundling at ${s.value} %`);
      assert.match(s.text, /\d+ of 200 cards in the ZIP/);
    } else {
      assert.ok(!bundlingSeen, "the page went back from bundling to rendering");
      assert.ok(s.value <= 75, `rendering at ${s.value} %`);
      assert.match(s.text, /rendering cards/);
    }
  }
  assert.ok(seen.length >= 1, "the bar moved");
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i] >= seen[i - 1], `the bar went back: ${seen}`);
  assert.equal(seen.at(-1), 100);
  assert.equal(await bar.getAttribute("aria-valuetext"), "100 %: 200 of 200 cards");
  await page.getByText("200 of 200 cards").waitFor();
  await page.getByText("Done: 200 cards ready.").waitFor();
  const estimates = running.map((s) => s.text.match(/About \d+ (s|min) left|Estimating time left/)[0]);
  const stages = running.map((s) => (/bundling the ZIP/.test(s.text) ? "bundling" : "rendering"));
  console.log(`# 200 cards rendered in ${seconds.toFixed(1)} s; the bar showed ${seen.join(", ")} %; stages: ${stages.join(", ")}; time left: ${estimates.join(", ")}`);
  await screenshot(page, "organiser-job-desktop.png");

  // The file store is another origin: the page navigates there, which downloads the ZIP.
  const link = await api("GET", `/v1/jobs/${state.jobId}/download`, { token: state.token });
  desktop.allow(new URL(link.body.url).origin);
  const [file] = await Promise.all([page.waitForEvent("download"), download.click()]);
  const zip = new AdmZip(readFileSync(await file.path()));
  const cards = zip.getEntries().filter((e) => e.entryName.endsWith(".png"));
  assert.equal(cards.length, 200);
  assert.ok(cards.some((e) => e.entryName === "Guest 001.png"), "files are named after their guests");
  const manifest = zip.getEntry("manifest.csv");
  assert.ok(manifest, "the ZIP lists its guests in manifest.csv");
  const lines = manifest.getData().toString("utf8").split("\r\n");
  assert.equal(lines[0], "\uFEFFname,reference,email,invite_url,file");
  assert.match(lines[1], /^Guest 001,1,,http:\/\/[^,]+\/i\/[\w-]{43},Guest 001\.png$/);
  cards.sort((a, b) => a.entryName.localeCompare(b.entryName));
  state.invites = cards.slice(0, 5).map((e) => decodeQr(e.getData()));
  for (const url of state.invites) assert.ok(url.startsWith(`${BASE}/i/`), url);
  assert.deepEqual(desktop.problems, []);
});

test("the same guests' cards come as print sheets on US Letter, a PDF with a page per nine cards", async () => {
  assert.ok(state.jobId, "needs the guests of the ZIP's test");
  const { page } = desktop;
  await page.goto(`${BASE}/#/polls/${state.pollId}`);
  await page.getByLabel("Cards as").first().waitFor();
  // The guest list's own buttons make the cards of every guest on it, as print sheets.
  await page.locator("#cards-file").selectOption("letter");
  await page.getByRole("button", { name: "Cards for all guests" }).click();
  await page.getByRole("heading", { level: 1, name: "Print sheets" }).waitFor();
  const sheetsJob = new URL(page.url()).hash.split("/")[2];
  assert.notEqual(sheetsJob, state.jobId, "a PDF is another job than the ZIP");
  const download = page.getByRole("button", { name: "Download the PDF" });
  await download.waitFor({ timeout: 120_000 });
  await page.getByText("Done: 200 cards ready.").waitFor();
  // The file store is another origin. A browser with a PDF viewer opens the sheets there,
  // ready to print; one without downloads them: either way the click reaches the file.
  const link = await api("GET", `/v1/jobs/${sheetsJob}/download`, { token: state.token });
  const files = new URL(link.body.url).origin;
  desktop.allow(files);
  const downloaded = page.waitForEvent("download").then(() => "downloaded");
  const opened = page.waitForURL((url) => url.origin === files).then(() => "opened");
  // Only one of the two happens; the other's timeout is not a failure.
  downloaded.catch(() => {});
  opened.catch(() => {});
  await download.click();
  const reached = await Promise.any([downloaded, opened]);
  console.log(`# the PDF was ${reached} by the browser`);
  const pdf = Buffer.from(await (await fetch(link.body.url)).arrayBuffer());
  assert.equal(pdf.subarray(0, 5).toString("latin1"), "%PDF-");
  // 200 cards at nine a page: 23 pages, each of US Letter's 612 × 792 points.
  const file = join(mkdtempSync(join(tmpdir(), "tally-sheets-")), "sheets.pdf");
  writeFileSync(file, pdf);
  let info;
  try {
    info = execFileSync("pdfinfo", [file], { encoding: "utf8" });
  } catch (e) {
    if (e.code !== "ENOENT") throw e;
    console.log("# SKIPPED the page count: pdfinfo (Debian's poppler-utils) is not installed");
  }
  if (info) {
    assert.match(info, /^Pages:\s+23$/m);
    assert.match(info, /^Page size:\s+612 x 792 pts \(letter\)$/m);
  }
  // The poll's files list the sheets beside the ZIP.
  await page.goto(`${BASE}/#/polls/${state.pollId}`);
  await page.locator(`[data-job="${sheetsJob}"]`).getByText("Print sheets").waitFor({ timeout: 10_000 });
  await page.locator(`[data-job="${state.jobId}"]`).getByText("Invite cards").waitFor();
  // The tests after this one start from the ZIP's page.
  await page.goto(`${BASE}/#/jobs/${state.jobId}`);
  await page.getByRole("button", { name: "Download the ZIP" }).waitFor();
  assert.deepEqual(desktop.problems, []);
});

test("the job page fits a phone", async () => {
  assert.ok(state.jobId, "needs the job of the previous test");
  const phone = await browser(PHONE);
  try {
    const { page } = phone;
    await page.goto(BASE + "/");
    await signIn(page);
    await page.getByRole("link", { name: QUESTION }).waitFor();
    await screenshot(page, "organiser-polls-phone.png");
    await page.goto(`${BASE}/#/jobs/${state.jobId}`);
    await page.getByRole("button", { name: "Download the ZIP" }).waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
    await screenshot(page, "organiser-job-phone.png");
    assert.deepEqual(phone.problems, []);
  } finally {
    await phone.close();
  }
});

test("the results chart follows the votes as they come in", async () => {
  assert.ok(state.invites, "needs the cards of the previous test");
  const { page } = desktop;
  await page.getByRole("link", { name: "Back to the poll and its results" }).click();
  await page.getByRole("heading", { level: 2, name: "Results" }).waitFor();
  await page.getByText("0 ballots").waitFor();

  const votes = ["o1", "o1", "o1", "o3", "o2"];
  for (const [i, url] of state.invites.entries()) {
    const token = new URL(url).pathname.split("/")[2];
    const cast = await api("POST", `/v1/polls/${state.pollId}/votes`, { invite: token, body: { choices: [votes[i]] } });
    assert.equal(cast.status, 201, JSON.stringify(cast.body));
  }
  // No reload: the chart refreshes itself.
  await page.getByText("5 ballots").waitFor({ timeout: 10_000 });
  await page.getByText("3 votes · 60 %").waitFor();
  await page.getByText("1 vote · 20 %").first().waitFor();
  const widths = await page.$$eval(".chart .bar > span", (bars) => bars.map((b) => b.style.width));
  assert.deepEqual(widths, ["60%", "20%", "20%"]);
  await page.waitForTimeout(500); // the bars' transition
  await screenshot(page, "organiser-results-desktop.png");
  assert.deepEqual(desktop.problems, []);
});

test("a CSV file fills the guest list", async () => {
  assert.ok(state.pollId, "needs the poll");
  const { page } = desktop;
  await page.getByLabel("Guest names").fill("");
  await page.getByLabel("Or load a CSV file").setInputFiles({
    name: "guests.csv",
    mimeType: "text/csv",
    buffer: Buffer.from('\uFEFFemail,name\r\nann@example.com,"Lee, Ann"\r\nben@example.com,Ben "Benny" Ode\r\n,\r\ncleo@example.com,"Cleo ""CP"" Park"\r\n'),
  });
  await page.getByText("3 guests").waitFor();
  assert.equal(await page.getByLabel("Guest names").inputValue(), 'Lee, Ann\nBen "Benny" Ode\nCleo "CP" Park');
  assert.deepEqual(desktop.problems, []);
});

test("another organiser sees none of it", async () => {
  assert.ok(state.pollId, "needs the poll");
  const other = await browser(DESKTOP);
  try {
    const { page } = other;
    await page.goto(BASE + "/");
    await page.getByLabel("Email").fill(uniqueEmail("other"));
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByText("No polls yet").waitFor();
    await page.goto(`${BASE}/#/polls/${state.pollId}`);
    await page.getByRole("heading", { name: "Poll not found" }).waitFor();
    assert.equal(await page.getByText(QUESTION).count(), 0);
    await page.goto(`${BASE}/#/jobs/${state.jobId}`);
    await page.getByRole("heading", { name: "Job not found" }).waitFor();
    assert.deepEqual(other.problems, []);
  } finally {
    await other.close();
  }
});

test("Sign out ends the session on the server, not only in the tab", async () => {
  const { page } = desktop;
  await page.goto(BASE + "/");
  await page.getByRole("heading", { level: 1, name: "My polls" }).waitFor();
  const { refresh_token: refresh } = JSON.parse(await page.evaluate(() => sessionStorage.getItem("tally.session")));
  assert.ok(refresh, "signed in with a refresh token");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in to Tally" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("tally.session")), null);
  // The refresh token the tab held is dead: whoever copied it cannot renew the session.
  const renewed = await api("POST", "/v1/auth/refresh", { body: { refresh_token: refresh } });
  assert.equal(renewed.status, 401, JSON.stringify(renewed.body));
  assert.deepEqual(desktop.problems, []);
});
