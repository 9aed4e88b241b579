// The guest list on the organiser's poll page: turnout that follows the votes without a
// reload, search, revoke (the card then says it was withdrawn) and reissue; the guest's
// page showing the results after their vote; and the poll's past card jobs with their
// downloads.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import AdmZip from "adm-zip";
import {
  BASE, DESKTOP, PASSWORD, PHONE, api, browser, createPoll, inviteGuests, screenshot, uniqueEmail, waitForJob,
} from "./lib.mjs";

const QUESTION = "Which band for the village fête?";
const NAMES = ["Ann Lee", "Ben Ode", "Cleo Park"];
const email = uniqueEmail("guest-list");
let desktop;
let token;
let poll;
let cards;

const tokenOf = (url) => new URL(url).pathname.split("/")[2];

before(async () => {
  const registered = await api("POST", "/v1/auth/register", { body: { email, password: PASSWORD } });
  assert.equal(registered.status, 201, JSON.stringify(registered.body));
  const login = await api("POST", "/v1/auth/login", { body: { email, password: PASSWORD } });
  token = login.body.access_token;
  poll = await createPoll(token, { question: QUESTION, options: ["Brass", "Folk"], visibility: "invite" });
  cards = await inviteGuests(token, poll.id, NAMES);
  desktop = await browser(DESKTOP);
});

after(async () => {
  await desktop?.close();
});

test("the poll page shows the guests and the turnout, which follows the votes", async () => {
  const { page } = desktop;
  await page.goto(BASE + "/");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { level: 1, name: "My polls" }).waitFor();
  await page.goto(`${BASE}/#/polls/${poll.id}`);
  await page.getByRole("heading", { level: 2, name: "Guests", exact: true }).waitFor();
  await page.getByText("0 of 3 guests have voted").waitFor();
  for (const name of NAMES) await page.getByRole("cell", { name, exact: true }).waitFor();

  const cast = await api("POST", `/v1/polls/${poll.id}/votes`, { invite: tokenOf(cards.get("Ann Lee")), body: { choices: ["o1"] } });
  assert.equal(cast.status, 201, JSON.stringify(cast.body));
  // No reload: the list refreshes itself.
  await page.getByText("1 of 3 guests have voted").waitFor({ timeout: 15_000 });
  const ann = page.locator("tr", { has: page.getByRole("cell", { name: "Ann Lee", exact: true }) });
  await ann.getByText("Voted").waitFor();

  await page.getByLabel("Search").fill("cleo");
  assert.equal(await page.locator("table.guests tbody tr").count(), 1);
  await page.getByLabel("Search").fill("");
  assert.equal(await page.locator("table.guests tbody tr").count(), 3);
  await screenshot(page, "organiser-guests-desktop.png");
  assert.deepEqual(desktop.problems, []);
});

test("revoking a guest withdraws their card at once; reissuing gives them a new one", async () => {
  const { page } = desktop;
  page.once("dialog", (d) => d.accept());
  const ben = page.locator("tr", { has: page.getByRole("cell", { name: "Ben Ode", exact: true }) });
  await ben.getByRole("button", { name: "Revoke" }).click();
  await ben.getByText("Revoked").waitFor();
  const dead = await api("GET", `/v1/invites/${tokenOf(cards.get("Ben Ode"))}`);
  assert.equal(dead.status, 410);
  assert.equal(dead.body.type, "/problems/invite-revoked");

  const phone = await browser(PHONE);
  try {
    await phone.page.goto(cards.get("Ben Ode"));
    await phone.page.getByRole("heading", { level: 1, name: "This invite was withdrawn" }).waitFor();
    await screenshot(phone.page, "guest-revoked-phone.png");
    assert.deepEqual(phone.problems, []);
  } finally {
    await phone.close();
  }

  await ben.getByRole("button", { name: "Reissue" }).click();
  await page.getByText("Ben Ode has a new card").waitFor();
  await ben.getByText("Invited").waitFor();
  assert.deepEqual(desktop.problems, []);
});

test("a guest sees the results after voting when the poll shows them", async () => {
  const phone = await browser(PHONE);
  try {
    const { page } = phone;
    await page.goto(cards.get("Cleo Park"));
    await page.getByText("Hello Cleo Park, you are invited to vote.").waitFor();
    await page.getByRole("radio", { name: "Folk" }).tap();
    await page.locator("form button[type=submit]").tap();
    await page.getByRole("heading", { level: 1, name: "Your vote is counted" }).waitFor();
    await page.getByRole("heading", { level: 2, name: "Results so far" }).waitFor();
    await page.getByText("2 votes in all.").waitFor();
    await screenshot(page, "guest-results-phone.png");
    assert.deepEqual(phone.problems, []);
  } finally {
    await phone.close();
  }
});

test("the poll page lists its past card jobs, newest first, with their downloads", async () => {
  // A second job: Ann's card alone, after the list's first job (before()).
  const guests = await api("GET", `/v1/polls/${poll.id}/guests`, { token });
  const ann = guests.body.guests.find((g) => g.name === "Ann Lee");
  const again = await api("POST", `/v1/polls/${poll.id}/cards`, { token, body: { guests: [ann.id] } });
  assert.equal(again.status, 202, JSON.stringify(again.body));
  await waitForJob(token, again.body.id);
  const jobs = await api("GET", `/v1/polls/${poll.id}/jobs`, { token });
  assert.equal(jobs.status, 200, JSON.stringify(jobs.body));
  assert.equal(jobs.body.items.length, 2);
  assert.equal(jobs.body.items[0].id, again.body.id, "newest first");

  // The poll page is open from the first test, with the list as it was then: back to the
  // polls and in again draws it afresh.
  const { page } = desktop;
  await page.goto(`${BASE}/#/`);
  await page.getByRole("heading", { level: 1, name: "My polls" }).waitFor();
  await page.goto(`${BASE}/#/polls/${poll.id}`);
  await page.getByRole("heading", { level: 2, name: "Files", exact: true }).waitFor();
  const rows = page.locator("ul.files li");
  await rows.nth(1).waitFor();
  assert.equal(await rows.count(), 2);
  assert.deepEqual(await rows.evaluateAll((lis) => lis.map((li) => li.dataset.job)), jobs.body.items.map((j) => j.id));
  assert.match(await rows.nth(0).innerText(), /^Invite cards \(1 card\), .+: Download$/);
  assert.match(await rows.nth(1).innerText(), /^Invite cards \(3 cards\), .+: Download$/);
  await screenshot(page, "organiser-files-desktop.png");

  // The older job's ZIP, downloaded from the list: the file store is another origin.
  const link = await api("GET", `/v1/jobs/${jobs.body.items[1].id}/download`, { token });
  desktop.allow(new URL(link.body.url).origin);
  const [file] = await Promise.all([
    page.waitForEvent("download"),
    rows.nth(1).getByRole("button", { name: "Download" }).click(),
  ]);
  const names = new AdmZip(readFileSync(await file.path())).getEntries()
    .map((e) => e.entryName).filter((n) => n.endsWith(".png")).sort();
  assert.deepEqual(names, NAMES.map((n) => `${n}.png`));

  // Each job links to its own page.
  await rows.nth(0).getByRole("link", { name: "Invite cards" }).click();
  await page.getByText("Done: 1 cards ready.").waitFor();
  assert.deepEqual(desktop.problems, []);
});
