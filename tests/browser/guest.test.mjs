// The guest's page: an invite URL decoded from a rendered card opens a page that votes in
// two taps, counts once, and says so when opened again.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  BASE, DESKTOP, PHONE, api, assertSecurityHeaders, browser, createPoll, inviteGuests, organiser, screenshot,
} from "./lib.mjs";

const QUESTION = "Which day suits you for the team dinner?";
const OPTIONS = ["Friday", "Saturday", "Sunday"];
let owner;
let poll;
let invites;
let phone;

const tokenOf = (url) => new URL(url).pathname.split("/")[2];

before(async () => {
  owner = await organiser("guest-test-owner");
  poll = await createPoll(owner.token, { question: QUESTION, options: OPTIONS, visibility: "invite" });
  invites = await inviteGuests(owner.token, poll.id, ["Ann Lee", "Ben Ode", "Cleo Park"]);
  phone = await browser(PHONE);
});

after(async () => {
  await phone?.close();
});

// The counts once counting has caught up with `total` ballots: ballots are counted from the
// table's stream a moment after their 201, so a read right after a vote may not show it yet.
// Gives up after 15 s and returns what it read then, for the caller's assertion to show.
async function results(total) {
  const until = Date.now() + 15_000;
  for (;;) {
    const r = await api("GET", `/v1/polls/${poll.id}/results`, { token: owner.token });
    assert.equal(r.status, 200);
    if (r.body.total >= total || Date.now() > until) {
      return Object.fromEntries(r.body.options.map((o) => [o.text, o.votes]));
    }
    await new Promise((done) => setTimeout(done, 100));
  }
}

test("a guest opens the invite URL decoded from their card and votes in two taps", async () => {
  const url = invites.get("Ann Lee");
  assert.ok(url.startsWith(`${BASE}/i/`), url);
  const { page } = phone;
  const response = await page.goto(url);
  assert.equal(response.status(), 200);
  assertSecurityHeaders(response.headers());

  await page.getByRole("heading", { level: 1, name: QUESTION }).waitFor();
  await page.getByText("Hello Ann Lee, you are invited to vote.").waitFor();
  const confirm = page.locator("form button[type=submit]");
  assert.equal(await confirm.textContent(), "Choose an option above");
  assert.equal(await confirm.isDisabled(), true, "nothing chosen yet");

  await page.getByRole("radio", { name: "Saturday" }).tap();
  assert.equal(await confirm.textContent(), "Vote for “Saturday”");
  await screenshot(page, "guest-vote-phone.png");
  await confirm.tap();

  await page.getByRole("heading", { level: 1, name: "Your vote is counted" }).waitFor();
  await page.getByText("You chose Saturday").waitFor();
  await screenshot(page, "guest-voted-phone.png");
  assert.deepEqual(await results(1), { Friday: 0, Saturday: 1, Sunday: 0 });
  assert.deepEqual(phone.problems, []);
});

test("the same invite cannot vote twice: opened again, it shows the choice it made", async () => {
  const url = invites.get("Ann Lee");
  const { page } = phone;
  await page.goto(url);
  await page.getByRole("heading", { level: 1, name: "This invite was already used" }).waitFor();
  await page.getByText("The choice was Saturday").waitFor();
  assert.equal(await page.getByRole("radio").count(), 0, "no ballot form on a used invite");
  await screenshot(page, "guest-used-phone.png");

  // Straight at the API, the invite is refused a second ballot.
  const again = await api("POST", `/v1/polls/${poll.id}/votes`, { invite: tokenOf(url), body: { choices: ["o1"] } });
  assert.equal(again.status, 409);
  assert.match(again.body.type, /\/problems\/already-voted$/);
  assert.deepEqual(await results(1), { Friday: 0, Saturday: 1, Sunday: 0 });
  assert.deepEqual(phone.problems, []);
});

test("an invite open in two tabs counts once: the second tab shows the first tab's vote", async () => {
  const url = invites.get("Ben Ode");
  const first = phone.page;
  const second = await phone.context.newPage();
  try {
    await first.goto(url);
    await second.goto(url);
    await second.getByRole("radio", { name: "Sunday" }).waitFor();

    await first.getByRole("radio", { name: "Friday" }).tap();
    await first.getByRole("button", { name: "Vote for “Friday”" }).tap();
    await first.getByRole("heading", { name: "Your vote is counted" }).waitFor();

    await second.getByRole("radio", { name: "Sunday" }).tap();
    await second.getByRole("button", { name: "Vote for “Sunday”" }).tap();
    await second.getByRole("heading", { name: "This invite was already used" }).waitFor();
    await second.getByText("The choice was Friday").waitFor();
  } finally {
    await second.close();
  }
  assert.deepEqual(await results(2), { Friday: 1, Saturday: 1, Sunday: 0 });
  assert.deepEqual(phone.problems, []);
});

test("a guest can vote with the keyboard alone", async () => {
  const desktop = await browser(DESKTOP);
  try {
    const { page } = desktop;
    await page.goto(invites.get("Cleo Park"));
    await page.getByRole("radio", { name: "Friday" }).waitFor();
    // The heading has focus; Tab reaches the choices, arrows move between them.
    await page.keyboard.press("Tab");
    await page.keyboard.press("Space");
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("ArrowDown");
    assert.equal(await page.getByRole("radio", { name: "Sunday" }).isChecked(), true);
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Vote for “Sunday”");
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Your vote is counted" }).waitFor();
    assert.deepEqual(await results(3), { Friday: 1, Saturday: 1, Sunday: 1 });
    assert.deepEqual(desktop.problems, []);
  } finally {
    await desktop.close();
  }
});

test("an unknown invite says it is not valid", async () => {
  const { page } = phone;
  const response = await page.goto(`${BASE}/i/${"x".repeat(43)}`);
  assertSecurityHeaders(response.headers());
  await page.getByRole("heading", { name: "This invite is not valid" }).waitFor();
  assert.deepEqual(phone.problems, []);
});
