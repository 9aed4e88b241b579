"use strict";
// Voting, for the guest and share pages; runs after common.js, whose helpers it uses.
(() => {
  const { h, problemText } = Tally;

  // An Idempotency-Key: a retried vote after a lost answer replays the first answer instead
  // of being refused as a second ballot. `getRandomValues` works outside secure contexts too.
  function randomKey() {
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // The ballot form of the guest and share pages: one tap to choose, one to confirm. The
  // confirm button names the choice, so the second tap is a deliberate one.
  function choiceForm(poll, onVote) {
    const multi = poll.max_choices > 1;
    const inputs = poll.options.map((o) => h("input", { type: multi ? "checkbox" : "radio", name: "choice", value: o.id }));
    const text = (input) => poll.options.find((o) => o.id === input.value).text;
    const button = h("button", { type: "submit", class: "wide", disabled: true });
    const error = h("p", { class: "error", role: "alert" });
    const chosen = () => inputs.filter((i) => i.checked);
    const update = () => {
      const c = chosen();
      if (multi) for (const i of inputs) i.disabled = !i.checked && c.length >= poll.max_choices;
      button.disabled = c.length === 0;
      button.textContent = !c.length ? "Choose an option above"
        : c.length === 1 ? `Vote for “${text(c[0])}”` : `Vote for these ${c.length} options`;
    };
    update();
    return h("form", {
      onchange: update,
      onsubmit: async (ev) => {
        ev.preventDefault();
        const c = chosen();
        if (!c.length) return;
        button.disabled = true;
        button.textContent = "Sending your vote…";
        error.textContent = "";
        try {
          await onVote(c.map((i) => i.value));
        } catch (e) {
          error.textContent = problemText(e);
          update();
        }
      },
    },
    h("fieldset", null,
      // The question is the page's heading and names the group of choices.
      h("legend", null, h("h1", null, poll.question)),
      multi ? h("p", { class: "muted" }, `Choose up to ${poll.max_choices}.`) : null,
      poll.options.map((o, n) => h("label", { class: "choice" }, inputs[n], h("span", null, o.text)))),
    button, error);
  }

  Object.assign(Tally, { randomKey, choiceForm });
})();
