"use strict";
// The guest's page behind an invite card's QR code, /i/<token>. The token in the address is
// the guest's credential for this one poll: it goes only to this origin's API, and the
// Referrer-Policy keeps it out of every other request.
(() => {
  const { api, h, show, choiceForm, problemText, randomKey, when } = Tally;
  const view = document.getElementById("view");
  const token = location.pathname.split("/")[2] || "";
  // One key for the page's life: tapping again after a lost answer cannot count twice.
  const key = randomKey();

  function message(title, text) {
    show(view, h("h1", null, title), h("p", null, text));
  }

  function failed(e) {
    show(view, h("h1", null, "Something went wrong"), h("p", { class: "error" }, problemText(e)),
      h("button", { type: "button", onclick: load }, "Try again"));
  }

  function texts(poll, choices) {
    return choices.map((id) => (poll.options.find((o) => o.id === id) || { text: id }).text).join(", ");
  }

  // The results, when the poll shows them to guests (always, or once closed), kept live and
  // appended to `into` below what is there. While the poll keeps them until the close, the
  // box stays empty and fills in when the poll closes.
  let stopResults = () => {};
  function results(poll, into) {
    stopResults();
    const [box, stop] = Tally.liveResults(poll.id, { invite: token });
    stopResults = stop;
    into.append(box);
  }

  // After the vote, and whenever the invite is opened again: what was chosen, and that the
  // invite cannot vote a second time.
  function voted(invite, ballot, justNow) {
    const poll = invite.poll;
    show(view, h("div", { class: "done" },
      h("p", { class: justNow ? "mark" : "mark used", "aria-hidden": "true" }, "✓"),
      h("h1", null, justNow ? "Your vote is counted" : "This invite was already used"),
      h("p", null, justNow ? `Thank you, ${invite.guest_name}.`
        : `${invite.guest_name} voted${ballot ? " on " + when(ballot.voted_at) : ""}.`),
      h("p", { class: "muted" }, poll.question),
      ballot ? h("p", null, justNow ? "You chose " : "The choice was ", h("span", { class: "pick" }, texts(poll, ballot.choices))) : null,
      h("p", { class: "muted small" }, "Each guest counts once, so this invite cannot vote again.")));
    results(poll, view, ballot);
  }

  async function vote(invite, choices) {
    const path = `/v1/polls/${encodeURIComponent(invite.poll.id)}/votes`;
    try {
      const ballot = await api("POST", path, { invite: token, body: { choices }, headers: { "idempotency-key": key } });
      voted(invite, ballot, true);
    } catch (e) {
      // Voted meanwhile, perhaps in another tab: show the ballot that counted.
      if (e.type.endsWith("/already-voted")) return load();
      if (e.type.endsWith("/poll-closed")) return message("Voting has closed", "The organiser closed this poll before your vote arrived.");
      throw e;
    }
  }

  function render(invite) {
    const poll = invite.poll;
    if (invite.used) return voted(invite, invite.ballot, false);
    if (poll.status !== "open") {
      message("Voting has closed", `“${poll.question}” no longer takes votes.`);
      return results(poll, view);
    }
    show(view, h("p", { class: "muted" }, `Hello ${invite.guest_name}, you are invited to vote.`),
      choiceForm(poll, (choices) => vote(invite, choices)));
  }

  async function load() {
    let invite;
    try {
      invite = await api("GET", "/v1/invites/" + encodeURIComponent(token), { auth: false });
    } catch (e) {
      if (e.type && e.type.endsWith("/invite-revoked")) {
        return message("This invite was withdrawn", "The organiser replaced or withdrew this card; ask them for your current one.");
      }
      if (e.type && e.type.endsWith("/poll-deleted")) {
        return message("This poll is gone", "The organiser deleted the poll this invite was for.");
      }
      if (e.status === 404 || e.status === 400) {
        return message("This invite is not valid", "The link may be incomplete: scan the whole code again, or ask the organiser for a new card.");
      }
      return failed(e);
    }
    render(invite);
  }

  load();
})();
