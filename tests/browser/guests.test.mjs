// The guest list on the organiser's poll page: turnout that follows the votes without a
// reload, search, revoke (the card then says it was withdrawn) and reissue; and the guest's
// page showing the results after their vote.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  BASE, DESKTOP, PASSWORD, PHONE, api, browser, createPoll, inviteGuests, screenshot, uniqueEmail,
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
