"use strict";
// The page behind a poll's share QR code, /p/<id>: a signed-in user votes in a public poll.
// Voting needs an account (one ballot per account), so the page signs in first.
(() => {
  const { api, h, show, choiceForm, problemText, signInForm, randomKey } = Tally;
  const view = document.getElementById("view");
  const id = location.pathname.split("/")[2] || "";
  const key = randomKey();

  function message(title, text) {
    show(view, h("h1", null, title), h("p", null, text), signOutButton());
  }

  function signOutButton() {
    return h("button", { type: "button", class: "link", onclick: async () => { await Tally.signOut(); load(); } }, "Sign out");
  }

  function signIn() {
    show(view, h("h1", null, "You are invited to vote"),
      h("p", { class: "muted" }, "Sign in, or create an account, to see the question and vote. Each account votes once."),
      signInForm(load));
  }

  async function vote(poll, choices) {
    try {
      const ballot = await api("POST", `/v1/polls/${encodeURIComponent(poll.id)}/votes`,
        { body: { choices }, headers: { "idempotency-key": key } });
      const picked = ballot.choices.map((c) => poll.options.find((o) => o.id === c).text).join(", ");
      show(view, h("div", { class: "done" },
        h("p", { class: "mark", "aria-hidden": "true" }, "✓"),
        h("h1", null, "Your vote is counted"),
        h("p", { class: "muted" }, poll.question),
        h("p", null, "You chose ", h("span", { class: "pick" }, picked)),
        Tally.liveResults(poll.id)[0]));
    } catch (e) {
      if (e.type.endsWith("/already-voted")) return message("You have already voted", "Each account votes once in a poll.");
      if (e.type.endsWith("/poll-closed")) return message("Voting has closed", "The poll closed before your vote arrived.");
      throw e;
    }
  }

  async function load() {
    if (!Tally.session) return signIn();
    let poll;
    try {
      poll = await api("GET", "/v1/polls/" + encodeURIComponent(id));
    } catch (e) {
      if (e.status === 401) return signIn();
      if (e.status === 404 || e.status === 400) {
        return message("Poll not found", "There is no poll at this address, or it takes votes by invitation only.");
      }
      return message("Something went wrong", problemText(e));
    }
    if (poll.visibility === "invite") {
      return message("By invitation only", "This poll takes votes from invited guests, through the link on their card.");
    }
    if (poll.status !== "open") return message("Voting has closed", `“${poll.question}” no longer takes votes.`);
    show(view, choiceForm(poll, (choices) => vote(poll, choices)), signOutButton());
  }

  Tally.onSignedOut = signIn;
  load();
})();
