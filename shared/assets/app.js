"use strict";
// The organiser's page at /: sign in, my polls, a new poll, invitations, the render job's
// progress and the live results. The view follows the address's fragment (#/polls/<id>,
// #/jobs/<id>), which holds ids only, never a token.
(() => {
  const { api, h, show, problemText, when, signInForm } = Tally;
  const view = document.getElementById("view");
  const nav = document.getElementById("nav");
  let stops = [];
  let me = null;
  let note = "";

  // Runs `step` now and again `ms` after each run ends, while the view lasts and while it
  // answers true; a hidden tab skips its turns, so a forgotten tab costs the API nothing.
  function every(ms, step) {
    let timer = 0;
    let live = true;
    const tick = async () => {
      if (!live) return;
      const again = document.hidden ? true : await step();
      if (live && again) timer = setTimeout(tick, ms);
    };
    stops.push(() => { live = false; clearTimeout(timer); });
    tick();
  }

  function card(...children) {
    return h("section", { class: "card" }, ...children);
  }

  function trouble(title, e) {
    show(view, card(h("h1", null, title), h("p", null, typeof e === "string" ? e : problemText(e)),
      h("p", null, h("a", { href: "#/" }, "Back to my polls"))));
  }

  async function route() {
    for (const stop of stops) stop();
    stops = [];
    if (!Tally.session) {
      me = null;
      nav.replaceChildren();
      return signInView();
    }
    if (!me) {
      try { me = await api("GET", "/v1/me"); } catch (e) { return Tally.session ? trouble("Something went wrong", e) : route(); }
    }
    nav.replaceChildren(h("a", { href: "#/" }, "My polls"),
      h("button", { type: "button", class: "link", onclick: signOut }, "Sign out"));
    // Ids are letters, digits and dashes: checked here, they need no escaping in paths.
    const [, kind, id] = location.hash.split("/");
    const ok = /^[\w-]{1,64}$/.test(id);
    if (kind === "polls" && ok) return pollView(id);
    if (kind === "jobs" && ok) return jobView(id);
    return homeView();
  }

  async function signOut() {
    await Tally.signOut();
    if (location.hash && location.hash !== "#/") location.hash = "#/";
    else route();
  }

  Tally.onSignedOut = () => {
    note = "Your session has ended: please sign in again.";
    route();
  };

  function signInView() {
    const message = note;
    note = "";
    show(view, card(h("h1", null, "Sign in to Tally"),
      h("p", { class: "muted" }, "Create polls, invite guests with QR-code cards and watch the votes come in."),
      message ? h("p", { class: "error", role: "alert" }, message) : null,
      signInForm(route)));
  }

  // ---- My polls and a new poll ----

  function tags(poll) {
    return [
      h("span", { class: "tag" }, poll.status === "open" ? "open" : "closed"),
      h("span", { class: "tag" }, poll.visibility === "invite" ? "invited guests" : "anyone signed in"),
    ];
  }

  async function homeView() {
    const list = h("ul", { class: "polls" });
    const error = h("p", { class: "error", role: "alert" });
    let cursor = null;
    const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => page() }, "Show more");
    async function page() {
      more.disabled = true;
      try {
        const query = cursor ? "&cursor=" + encodeURIComponent(cursor) : "";
        const result = await api("GET", "/v1/polls?mine=true&limit=20" + query);
        for (const poll of result.items) {
          list.append(h("li", null, h("a", { href: "#/polls/" + poll.id },
            h("strong", null, poll.question), tags(poll), h("span", { class: "muted small" }, when(poll.created_at)))));
        }
        if (!list.children.length) list.append(h("li", { class: "muted" }, "No polls yet: create your first one below."));
        cursor = result.next_cursor;
        more.hidden = !cursor;
      } catch (e) {
        error.textContent = problemText(e);
      }
      more.disabled = false;
    }
    show(view, card(h("h1", null, "My polls"), h("p", { class: "muted small" }, "Signed in as " + me.email),
      list, more, error), newPollForm());
    await page();
  }

  function newPollForm() {
    const question = h("input", { type: "text", id: "question", required: true, maxlength: 300 });
    const options = h("textarea", { id: "options", required: true, rows: 4 });
    const eventName = h("input", { type: "text", id: "event-name", maxlength: 100 });
    const visibility = h("select", { id: "visibility" },
      h("option", { value: "invite" }, "Invited guests (with their cards)"),
      h("option", { value: "public" }, "Anyone signed in, with the link"));
    const error = h("p", { class: "error", role: "alert" });
    return h("form", {
      class: "card",
      "aria-labelledby": "new-poll",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const texts = options.value.split("\n").map((t) => t.trim()).filter(Boolean);
        if (texts.length < 2 || texts.length > 20) {
          error.textContent = "Give 2 to 20 options, one per line.";
          return options.focus();
        }
        ev.submitter.disabled = true;
        try {
          const poll = await api("POST", "/v1/polls", {
            body: { question: question.value.trim(), options: texts, visibility: visibility.value, event_name: eventName.value.trim() || null },
          });
          location.hash = "#/polls/" + poll.id;
        } catch (e) {
          error.textContent = problemText(e);
          ev.submitter.disabled = false;
        }
      },
    },
    h("h2", { id: "new-poll" }, "New poll"),
    h("label", { for: "question" }, "Question"), question,
    h("label", { for: "options" }, "Options", h("span", { class: "hint" }, "2 to 20, one per line")), options,
    h("label", { for: "visibility" }, "Who can vote"), visibility,
    h("label", { for: "event-name" }, "Event name", h("span", { class: "hint" }, "Optional: printed on the invite cards")), eventName,
    h("button", { type: "submit" }, "Create poll"), error);
  }

  // ---- One poll: live results, sharing, invitations ----

  async function pollView(id) {
    let poll;
    try {
      poll = await api("GET", "/v1/polls/" + id);
    } catch (e) {
      return trouble(e.status === 404 ? "Poll not found" : "Something went wrong",
        e.status === 404 ? "None of your polls has this address." : e);
    }
    // Public polls are readable by any signed-in user; this page is for their owner only.
    if (poll.owner_id !== me.id) {
      return trouble("Not your poll", "This poll belongs to another account. Its share page is at /p/" + poll.id + ".");
    }
    const share = location.origin + "/p/" + poll.id;
    const error = h("p", { class: "error", role: "alert" });
    const close = async () => {
      if (!confirm("Close this poll? No more votes will be taken.")) return;
      try {
        await api("POST", `/v1/polls/${id}/close`);
        route();
      } catch (e) { error.textContent = problemText(e); }
    };
    const qr = async () => {
      try {
        const job = await api("POST", `/v1/polls/${id}/qr`, { body: { format: "png" } });
        location.hash = "#/jobs/" + job.id;
      } catch (e) { error.textContent = problemText(e); }
    };
    show(view,
      card(h("h1", null, poll.question),
        poll.event_name ? h("p", { class: "muted", id: "event" }, poll.event_name) : null,
        h("p", null, tags(poll)),
        poll.visibility === "public"
          ? h("p", null, "Share page: ", h("span", { class: "url" }, share), " ",
            h("button", { type: "button", class: "secondary", onclick: qr }, "Make a share QR code"))
          : h("p", { class: "muted small" }, "Guests vote with their invite cards."),
        poll.status === "open" ? h("button", { type: "button", class: "secondary", onclick: close }, "Close voting") : null,
        error),
      resultsCard(poll),
      guestsCard(poll),
      filesCard(poll),
      poll.status === "open" ? inviteForm(poll) : null);
  }

  // The guest list: turnout (refreshed while votes come in), a searchable table of guests with
  // their status, revoke and reissue, and cards for the new or all guests.
  function guestsCard(poll) {
    const turnout = h("p", { class: "figures", "aria-live": "polite" }, "…");
    const search = h("input", { type: "search", id: "guest-search", placeholder: "Search by name, email or ref" });
    const body = h("tbody");
    const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more guests");
    const error = h("p", { class: "error", role: "alert" });
    const open = poll.status === "open";
    let rows = [];
    let next = null;
    const label = { invited: "Invited", opened: "Opened", voted: "Voted", revoked: "Revoked" };
    const act = async (guest, action) => {
      if (action === "revoke" && !confirm(`Withdraw ${guest.name}'s card? It stops working at once.`)) return;
      error.textContent = "";
      try {
        const updated = await api("POST", `/v1/polls/${poll.id}/guests/${encodeURIComponent(guest.id)}/${action}`);
        rows = rows.map((g) => (g.id === updated.id ? updated : g));
        draw();
        if (action === "reissue") error.textContent = `${guest.name} has a new card: make their cards to print it.`;
      } catch (e) { error.textContent = problemText(e); }
    };
    const files = filePicker("cards-file");
    const cards = async (guests) => {
      error.textContent = "";
      try {
        const job = await api("POST", `/v1/polls/${poll.id}/cards`, { body: { guests, ...files.body() } });
        location.hash = "#/jobs/" + job.id;
      } catch (e) { error.textContent = problemText(e); }
    };
    function draw() {
      const q = search.value.trim().toLowerCase();
      const shown = rows.filter((g) => !q || [g.name, g.email, g.ref].some((v) => v && v.toLowerCase().includes(q)));
      body.replaceChildren(...shown.map((g) => h("tr", { "data-guest": g.id },
        h("td", null, g.name), h("td", { class: "muted small" }, g.email || g.ref || ""),
        h("td", null, h("span", { class: "status " + g.status }, label[g.status] || g.status)),
        h("td", null,
          g.status !== "revoked" ? h("button", { type: "button", class: "link", onclick: () => act(g, "revoke") }, "Revoke") : null,
          open ? h("button", { type: "button", class: "link", onclick: () => act(g, "reissue") }, "Reissue") : null,
          open && g.status !== "revoked" ? h("button", { type: "button", class: "link", onclick: () => cards([g.id]) }, "Card") : null))));
      more.hidden = !next;
    }
    async function page(cursor) {
      const query = cursor ? `?limit=99&cursor=${encodeURIComponent(cursor)}` : "?limit=99";
      const answer = await api("GET", `/v1/polls/${poll.id}/guests${query}`);
      next = answer.next_cursor;
      return answer;
    }
    more.addEventListener("click", async () => {
      try { rows = rows.concat((await page(next)).guests); draw(); } catch (e) { error.textContent = problemText(e); }
    });
    search.addEventListener("input", draw);
    every(5000, async () => {
      let answer;
      try { answer = await page(null); } catch (e) { error.textContent = problemText(e); return e.status === 0 || e.status >= 500; }
      const c = answer.counts;
      const n = (x) => x.toLocaleString("en");
      turnout.textContent = c.voted === null
        ? `${n(c.opened)} of ${n(c.invited)} guests have opened their invite`
        : `${n(c.voted)} of ${n(c.invited)} ${c.invited === 1 ? "guest has" : "guests have"} voted`;
      // The first page is refreshed in place; pages loaded beyond it stay as they were.
      const fresh = new Map(answer.guests.map((g) => [g.id, g]));
      const known = new Set(rows.map((g) => g.id));
      rows = rows.map((g) => fresh.get(g.id) || g).concat(answer.guests.filter((g) => !known.has(g.id)));
      draw();
      return poll.status === "open";
    });
    return card(h("h2", null, "Guests"), turnout,
      open ? h("label", { for: "cards-file" }, "Cards as") : null, open ? files.select : null,
      open ? h("p", null,
        h("button", { type: "button", class: "secondary", onclick: () => cards("new") }, "Cards for new guests"), " ",
        h("button", { type: "button", class: "secondary", onclick: () => cards("all") }, "Cards for all guests")) : null,
      h("label", { for: "guest-search" }, "Search"), search,
      h("table", { class: "guests" }, h("thead", null, h("tr", null, h("th", null, "Name"), h("th", null, "Email or ref"), h("th", null, "Status"), h("th", null, ""))), body),
      more, error);
  }

  // The poll's jobs, newest first, each with its download while its file lasts; refreshed
  // while one is still running.
  function filesCard(poll) {
    const list = h("ul", { class: "files" });
    const error = h("p", { class: "error", role: "alert" });
    const section = card(h("h2", null, "Files"), list, error);
    section.hidden = true;
    every(5000, async () => {
      let jobs;
      try { jobs = (await api("GET", `/v1/polls/${poll.id}/jobs?limit=10`)).items; } catch (e) { error.textContent = problemText(e); return e.status === 0 || e.status >= 500; }
      section.hidden = !jobs.length;
      list.replaceChildren(...jobs.map((j) => {
        const [name, unit] = KINDS[j.kind] || KINDS.invites;
        const title = j.media_type === "application/pdf" ? "Print sheets" : name;
        return h("li", { "data-job": j.id }, h("a", { href: "#/jobs/" + j.id }, title), ` (${j.total} ${j.total === 1 ? unit.slice(0, -1) : unit}), ${when(j.created_at)}: `,
          j.download_url ? h("button", { type: "button", class: "link", onclick: (ev) => fetchFile(j.id, ev.target, error) }, "Download")
            : j.status === "done" ? "expired" : j.status);
      }));
      return jobs.some((j) => j.status === "queued" || j.status === "running");
    });
    return section;
  }

  // A job's file lives on the file store's origin: a presigned link, opened by navigation (a
  // download), since a fetch across origins would need CORS.
  async function fetchFile(id, button, error) {
    button.disabled = true;
    error.textContent = "";
    try {
      const link = await api("GET", `/v1/jobs/${id}/download`, { headers: { accept: "application/json" } });
      location.assign(link.url);
    } catch (e) {
      error.textContent = e.status === 410
        ? "This file has expired: files are kept for 24 hours. Start the job again for a new one."
        : problemText(e);
    }
    button.disabled = false;
  }

  function resultsCard(poll) {
    // Rows are made once and then updated, so that the bars glide to their new widths.
    const rows = new Map();
    const list = h("ul", { class: "chart" }, poll.options.map((o) => {
      const row = { count: h("span", null, "0 votes"), fill: h("span") };
      row.item = h("li", null, h("div", { class: "label" }, h("span", null, o.text), row.count),
        h("div", { class: "bar", "aria-hidden": "true" }, row.fill));
      rows.set(o.id, row);
      return row.item;
    }));
    const total = h("p", { class: "figures" }, "…");
    const status = h("p", { class: "muted small" });
    const badge = h("span", { class: "live-badge", role: "status" }, "Connecting…");
    const draw = (results) => {
      const lead = Math.max(...results.options.map((o) => o.votes));
      for (const o of results.options) {
        const row = rows.get(o.id);
        if (!row) continue;
        const share = results.total ? Math.round((o.votes * 100) / results.total) : 0;
        row.count.textContent = `${o.votes} ${o.votes === 1 ? "vote" : "votes"} · ${share} %`;
        row.fill.style.width = share + "%";
        row.item.className = o.votes === lead && lead > 0 ? "lead" : "";
      }
      total.textContent = `${results.total} ${results.total === 1 ? "ballot" : "ballots"}`;
      status.textContent = results.status === "open"
        ? `Updated ${new Date().toLocaleTimeString()}.`
        : "Voting has closed: these are the final results.";
    };
    const states = {
      live: ["● Live", "Votes appear here as they are counted."],
      polling: ["Reconnecting…", "The live connection dropped: checking every 3 seconds meanwhile."],
      closed: ["Final", ""],
    };
    stops.push(Tally.watchResults(poll.id, {
      onResults: draw,
      onState: (s) => {
        badge.textContent = states[s][0];
        badge.dataset.state = s;
        badge.title = states[s][1];
      },
      onError: (e) => { status.textContent = problemText(e); },
    }));
    return card(h("h2", null, "Results ", badge), total, list, status);
  }

  // Names, one per line, or the "name" column of a CSV file (else its first column).
  function inviteForm(poll) {
    const names = h("textarea", { id: "guests", rows: 8, spellcheck: "false", required: true });
    const file = h("input", { type: "file", id: "csv", accept: ".csv,text/csv,text/plain" });
    const count = h("p", { class: "muted", "aria-live": "polite" });
    const error = h("p", { class: "error", role: "alert" });
    const files = filePicker("invite-file");
    const list = () => names.value.split("\n").map((n) => n.trim()).filter(Boolean);
    const counted = () => {
      const n = list().length;
      count.textContent = n === 1 ? "1 guest" : `${n} guests`;
    };
    names.addEventListener("input", counted);
    file.addEventListener("change", async () => {
      if (!file.files.length) return;
      names.value = csvNames(await file.files[0].text()).join("\n");
      counted();
    });
    counted();
    return h("form", {
      class: "card",
      "aria-labelledby": "invite",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const guests = list().map((name) => ({ name }));
        ev.submitter.disabled = true;
        error.textContent = "";
        try {
          // Guests already on the list get their existing card again, so nobody holds two.
          const job = await api("POST", `/v1/polls/${poll.id}/invites`, { body: { guests, ...files.body() } });
          location.hash = "#/jobs/" + job.id;
        } catch (e) {
          error.textContent = problemText(e);
          ev.submitter.disabled = false;
        }
      },
    },
    h("h2", { id: "invite" }, "Invite guests"),
    h("p", { class: "muted small" }, "Each guest gets a card with a QR code that lets them vote once; guests already invited get the card they have."),
    h("label", { for: "guests" }, "Guest names", h("span", { class: "hint" }, "One per line")), names,
    h("label", { for: "csv" }, "Or load a CSV file", h("span", { class: "hint" }, "The “name” column, or else the first")), file,
    h("label", { for: "invite-file" }, "Cards as"), files.select,
    count, h("button", { type: "submit" }, "Make invite cards"), error);
  }

  // A cards job's file: a ZIP of PNGs, or print sheets (a PDF, nine cards a page).
  function filePicker(id) {
    const select = h("select", { id },
      h("option", { value: "zip" }, "PNG files, one per guest, in a ZIP"),
      h("option", { value: "a4" }, "Print sheets on A4 paper (PDF)"),
      h("option", { value: "letter" }, "Print sheets on US Letter paper (PDF)"));
    const body = () => (select.value === "zip" ? {} : { format: "pdf", paper: select.value });
    return { select, body };
  }

  function csvNames(text) {
    const rows = csvRows(text.replace(/^\uFEFF/, ""));
    if (!rows.length) return [];
    const head = rows[0].map((c) => c.trim().toLowerCase());
    const column = head.indexOf("name");
    const body = column >= 0 ? rows.slice(1) : rows;
    return body.map((row) => (row[Math.max(column, 0)] || "").trim()).filter(Boolean);
  }

  // RFC 4180: quoted fields may hold separators, line breaks and doubled quotes; a quote
  // inside an unquoted field is kept as it is. Spreadsheets in some locales separate with
  // semicolons; the first line tells which.
  function csvRows(text) {
    const first = text.split("\n", 1)[0];
    const sep = (first.match(/;/g) || []).length > (first.match(/,/g) || []).length ? ";" : ",";
    const rows = [];
    let row = [];
    let field = "";
    let quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c !== '"') field += c;
        else if (text[i + 1] === '"') { field += '"'; i++; } else quoted = false;
      } else if (c === '"' && field === "") quoted = true;
      else if (c === sep) { row.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field); rows.push(row); row = []; field = "";
      } else field += c;
    }
    if (field || row.length) { row.push(field); rows.push(row); }
    return rows;
  }

  // ---- A render job: live progress, time left, download ----

  const KINDS = {
    invites: ["Invite cards", "cards", "Download the ZIP"],
    qr: ["Share QR code", "codes", "Download the QR code"],
    chart: ["Results chart", "charts", "Download the chart"],
  };

  function jobView(id) {
    const title = h("h1", { id: "job-title" }, "Render job");
    const state = h("p", { role: "status" }, "Loading…");
    const fill = h("span");
    const bar = h("div", {
      class: "bar", role: "progressbar", "aria-labelledby": "job-title",
      "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0",
    }, fill);
    const count = h("span");
    const percent = h("span");
    const left = h("p", { class: "muted" });
    const actions = h("div");
    const error = h("p", { class: "error", role: "alert" });
    const back = h("p");
    show(view, card(title, state, bar, h("p", { class: "figures" }, count, percent), left, actions, error, back));
    const samples = [];


    // Time left, from the last 15 s of progress in this stage (stages differ in pace).
    let sampled;
    function timeLeft(job, stage) {
      const now = Date.now();
      if (stage !== sampled) samples.length = 0, sampled = stage;
      samples.push({ t: now, p: job.progress });
      while (samples.length > 2 && now - samples[0].t > 15000) samples.shift();
      const first = samples[0];
      const rate = (job.progress - first.p) / ((now - first.t) / 1000);
      if (!(rate > 0)) return job.status === "queued" ? "" : "Estimating time left…";
      const seconds = Math.max(1, Math.round((1 - job.progress) / rate));
      return seconds < 90 ? `About ${seconds} s left` : `About ${Math.round(seconds / 60)} min left`;
    }

    function draw(job) {
      const [name, unit, zipLabel] = KINDS[job.kind] || KINDS.invites;
      const sheets = job.media_type === "application/pdf";
      const label = sheets ? "Download the PDF" : zipLabel;
      title.textContent = sheets ? "Print sheets" : name;
      const stage = job.stage;
      const bundling = stage === "bundling" && job.status === "running";
      const pct = Math.floor(job.progress * 100);
      fill.style.width = pct + "%";
      bar.setAttribute("aria-valuenow", String(pct));
      const figures = bundling
        ? `${job.bundled} of ${job.bundle_total} ${unit} ${sheets ? "on the sheets" : "in the ZIP"}`
        : `${job.done} of ${job.total} ${unit}`;
      bar.setAttribute("aria-valuetext", `${pct} %: ${figures}`);
      count.textContent = figures;
      percent.textContent = pct + " %";
      const states = {
        queued: "Queued: waiting for a worker.",
        running: job.kind !== "invites" ? `Rendering ${unit}…`
          : bundling ? (sheets ? "Step 2 of 2: drawing the print sheets…" : "Step 2 of 2: bundling the ZIP…")
          : `Step 1 of 2: rendering ${unit}…`,
        done: `Done: ${job.total} ${unit} ready.`,
        failed: "The job failed" + (job.error ? ": " + job.error : "."),
      };
      if (state.textContent !== states[job.status]) state.textContent = states[job.status];
      left.textContent = job.status === "done"
        ? (job.expires_at ? `The download stays available until ${when(job.expires_at)}.` : "")
        : job.status === "failed" ? "" : timeLeft(job, stage);
      if (job.failed) left.textContent += ` ${job.failed} failed.`;
      bar.classList.toggle("done", job.status === "done");
      if (job.status === "done" && job.download_url && !actions.children.length) {
        actions.append(h("button", { type: "button", id: "download", onclick: (ev) => fetchFile(id, ev.target, error) }, label));
      }
      if (!back.children.length) {
        back.append(h("a", { href: "#/polls/" + job.poll_id }, "Back to the poll and its results"));
      }
    }

    every(700, async () => {
      let job;
      try {
        job = await api("GET", "/v1/jobs/" + id);
      } catch (e) {
        if (e.status === 404) {
          trouble("Job not found", "None of your jobs has this address.");
          return false;
        }
        error.textContent = problemText(e);
        return e.status === 0 || e.status >= 500;
      }
      error.textContent = "";
      draw(job);
      return job.status === "queued" || job.status === "running";
    });
  }

  window.addEventListener("hashchange", route);
  route();
})();
