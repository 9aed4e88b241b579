// The share page behind a poll's QR code: a visitor signs up on the page and votes once.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  BASE, PASSWORD, PHONE, api, browser, createPoll, decodeQr, downloadJob, organiser, screenshot, uniqueEmail,
  waitForJob,
} from "./lib.mjs";

const QUESTION = "Should the office get a coffee machine?";
let owner;
let poll;
let shareUrl;
let phone;

before(async () => {
  owner = await organiser("share-test-owner");
  poll = await createPoll(owner.token, { question: QUESTION, options: ["Yes", "No"], visibility: "public" });
  const started = await api("POST", `/v1/polls/${poll.id}/qr`, { token: owner.token, body: { format: "png" } });
  assert.equal(started.status, 202, JSON.stringify(started.body));
  await waitForJob(owner.token, started.body.id);
  shareUrl = decodeQr(await downloadJob(owner.token, started.body.id));
  phone = await browser(PHONE);
});

after(async () => {
  await phone?.close();
});

test("a visitor opens the share QR code's URL, signs up on the page and votes once", async () => {
  assert.equal(shareUrl, `${BASE}/p/${poll.id}`);
  const { page } = phone;
  await page.goto(shareUrl);
  await page.getByRole("heading", { name: "You are invited to vote" }).waitFor();
  await page.getByLabel("Email").fill(uniqueEmail("visitor"));
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).tap();

  await page.getByRole("heading", { level: 1, name: QUESTION }).waitFor();
  await page.getByRole("radio", { name: "Yes" }).tap();
  await screenshot(page, "share-vote-phone.png");
  await page.getByRole("button", { name: "Vote for “Yes”" }).tap();
  await page.getByRole("heading", { name: "Your vote is counted" }).waitFor();

  // The session survives a reload of the tab; a second ballot does not count.
  await page.reload();
  await page.getByRole("radio", { name: "No" }).tap();
  await page.getByRole("button", { name: "Vote for “No”" }).tap();
  await page.getByRole("heading", { name: "You have already voted" }).waitFor();

  const results = await api("GET", `/v1/polls/${poll.id}/results`, { token: owner.token });
  assert.deepEqual(results.body.options.map((o) => o.votes), [1, 0]);
  assert.deepEqual(phone.problems, []);
});
