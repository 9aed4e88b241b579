// Live results: the organiser's chart is pushed over the WebSocket, not polled. A visitor
// votes from another browser context (a phone on the share page), and the organiser's bar
// moves without a reload and without a single read of the results while the socket is live;
// the visitor's own page then follows the next ballots too.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  BASE, DESKTOP, PASSWORD, PHONE, api, browser, createPoll, organiser, screenshot, uniqueEmail,
} from "./lib.mjs";

const QUESTION = "Which talk opens the conference?";
let owner;
let poll;
let desktop;
let phone;

before(async () => {
  owner = await organiser("live-owner");
  poll = await createPoll(owner.token, { question: QUESTION, options: ["Keynote", "Panel"], visibility: "public" });
  desktop = await browser(DESKTOP);
  phone = await browser(PHONE);
});

after(async () => {
  await desktop?.close();
  await phone?.close();
});

test("a ballot from another browser moves the organiser's bar at once, pushed, not polled", async () => {
  const { page } = desktop;
  await page.goto(`${BASE}/#/polls/${poll.id}`);
  await page.getByLabel("Email").fill(owner.email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { level: 1, name: QUESTION }).waitFor();
  await page.getByRole("status").filter({ hasText: "● Live" }).waitFor({ timeout: 15_000 });
  await page.getByText("0 ballots").waitFor();

  // From here on, every read of the results is counted: a live chart makes none.
  const reads = [];
  page.on("request", (r) => { if (r.url().endsWith(`/v1/polls/${poll.id}/results`)) reads.push(r.url()); });

  const visitor = phone.page;
  await visitor.goto(`${BASE}/p/${poll.id}`);
  await visitor.getByLabel("Email").fill(uniqueEmail("live-visitor"));
  await visitor.getByLabel("Password").fill(PASSWORD);
  await visitor.getByRole("button", { name: "Create account" }).tap();
  await visitor.getByRole("radio", { name: "Panel" }).tap();
  const votedAt = Date.now();
  await visitor.getByRole("button", { name: "Vote for “Panel”" }).tap();
  await visitor.getByRole("heading", { name: "Your vote is counted" }).waitFor();

  await page.getByText("1 vote · 100 %").waitFor({ timeout: 5_000 });
  const seenAfter = Date.now() - votedAt;
  await page.getByText("1 ballot", { exact: true }).waitFor();
  const widths = await page.$$eval(".chart .bar > span", (bars) => bars.map((b) => b.style.width));
  assert.deepEqual(widths, ["0%", "100%"]);
  assert.deepEqual(reads, [], "the bar moved by a push, with no read of the results");
  assert.ok(seenAfter < 5_000, `seen after ${seenAfter} ms`);

  // The visitor's page shows the results and follows the next ballots live too.
  await visitor.getByRole("heading", { name: /Results so far/ }).waitFor();
  await visitor.locator(".live-results").getByText("● Live").waitFor({ timeout: 15_000 });
  for (const choice of ["o1", "o1"]) {
    const other = await organiser("live-voter");
    const cast = await api("POST", `/v1/polls/${poll.id}/votes`, { token: other.token, body: { choices: [choice] } });
    assert.equal(cast.status, 201, JSON.stringify(cast.body));
  }
  await visitor.locator(".live-results").getByText("3 votes in all.").waitFor({ timeout: 5_000 });
  await page.getByText("2 votes · 67 %").waitFor({ timeout: 5_000 });
  await page.waitForTimeout(500); // the bars' transition
  await screenshot(page, "organiser-live-results-desktop.png");
  await screenshot(visitor, "share-live-results-phone.png");
  assert.deepEqual(desktop.problems, []);
  assert.deepEqual(phone.problems, []);
});
