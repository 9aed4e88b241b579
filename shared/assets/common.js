"use strict";
// Shared by every page: the API client, the session, and small DOM helpers. Pages build their
// DOM with `h`, which only ever sets text and attributes, so a poll's question or a guest's
// name can never become markup.
const Tally = (() => {
  const KEY = "tally.session";

  // The tokens live in this tab's session storage: they survive a reload but not the tab,
  // never go into a URL, and are never written to local storage, which outlives the tab.
  let session = null;
  try { session = JSON.parse(sessionStorage.getItem(KEY)); } catch { session = null; }

  function setSession(value) {
    session = value;
    try {
      if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
      else sessionStorage.removeItem(KEY);
    } catch { /* Storage refused (a private window): the session stays in memory. */ }
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `The request failed (${status}).`);
      this.status = status;
      this.type = problem.type || "";
      this.problem = problem;
    }
  }

  async function send(method, path, opts) {
    const headers = { accept: "application/json" };
    if (opts.body !== undefined) headers["content-type"] = "application/json";
    if (opts.invite) headers.authorization = "Invite " + opts.invite;
    else if (opts.auth !== false && session) headers.authorization = "Bearer " + session.access_token;
    Object.assign(headers, opts.headers);
    let response;
    try {
      response = await fetch(path, {
        method, headers, cache: "no-store", credentials: "omit",
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      });
    } catch {
      throw new ApiError(0, { detail: "The server could not be reached. Check your connection and try again." });
    }
    let data = null;
    try { data = JSON.parse(await response.text()); } catch { /* No body, or not JSON. */ }
    if (opts.raw && response.status === 304) return { status: 304, etag: response.headers.get("etag"), data: null };
    if (!response.ok) throw new ApiError(response.status, data || {});
    return opts.raw ? { status: response.status, etag: response.headers.get("etag"), data } : data;
  }

  // A refresh token is spent when used, and presenting a spent one revokes the whole
  // session, so requests that fail together share one refresh.
  let refreshing = null;
  function refresh() {
    if (!refreshing) {
      const token = session && session.refresh_token;
      refreshing = send("POST", "/v1/auth/refresh", { body: { refresh_token: token }, auth: false })
        .then((tokens) => setSession(tokens), (e) => { setSession(null); throw e; })
        .finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  // Calls the API on this origin. An expired access token is refreshed once, then the call
  // is repeated; `onSignedOut` hears when the session cannot be saved.
  async function api(method, path, opts = {}) {
    const used = session && session.access_token;
    try {
      return await send(method, path, opts);
    } catch (e) {
      if (e.status !== 401 || opts.invite || opts.auth === false || !used) throw e;
      if (!session || session.access_token === used) {
        try { await refresh(); } catch { Tally.onSignedOut(); throw e; }
      }
      return send(method, path, opts);
    }
  }

  async function signIn(email, password, register) {
    const body = { email, password };
    if (register) await send("POST", "/v1/auth/register", { body, auth: false });
    setSession(await send("POST", "/v1/auth/login", { body, auth: false }));
  }

  // Ends the session on the server too (its refresh token's family is revoked), not only in
  // this tab. The tab forgets the tokens at once, so it is signed out even when the server
  // cannot be reached; a refresh in flight is waited for, since it replaces the token.
  async function signOut() {
    if (refreshing) { try { await refreshing; } catch { /* Already signed out. */ } }
    const token = session && session.refresh_token;
    setSession(null);
    if (!token) return;
    try {
      await send("POST", "/v1/auth/logout", { body: { refresh_token: token }, auth: false });
    } catch { /* Expired or unknown already: nothing is left to end. */ }
  }

  // A problem document in words: its detail, and each field's complaint when it has them.
  function problemText(e) {
    const fields = Object.entries((e.problem && e.problem.errors) || {})
      .map(([field, messages]) => `${field}: ${[].concat(messages).join(", ")}`);
    return fields.length ? `${e.message} ${fields.join("; ")}` : e.message;
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) if (child != null && child !== false) el.append(child);
    return el;
  }

  // Replaces a view and moves focus to its heading, so that keyboard and screen-reader users
  // land on what changed rather than on a button that no longer exists.
  function show(container, ...nodes) {
    container.replaceChildren(...nodes);
    const heading = container.querySelector("h1, h2");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  }

  // Sign in, or create an account and sign in: one form, two buttons.
  function signInForm(onDone) {
    const email = h("input", { type: "email", id: "email", autocomplete: "username", required: true });
    const password = h("input", {
      type: "password", id: "password", autocomplete: "current-password", required: true, minlength: 8, maxlength: 128,
    });
    const error = h("p", { class: "error", role: "alert" });
    return h("form", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        const register = ev.submitter && ev.submitter.value === "register";
        error.textContent = "";
        for (const b of ev.target.querySelectorAll("button")) b.disabled = true;
        try {
          await signIn(email.value.trim(), password.value, register);
          onDone();
        } catch (e) {
          error.textContent = e.status === 401 ? "That email and password do not match an account." : problemText(e);
          for (const b of ev.target.querySelectorAll("button")) b.disabled = false;
        }
      },
    },
    h("label", { for: "email" }, "Email"), email,
    h("label", { for: "password" }, "Password", h("span", { class: "hint" }, "8 to 128 characters")), password,
    h("div", null,
      h("button", { type: "submit", value: "signin" }, "Sign in"),
      h("button", { type: "submit", value: "register", class: "secondary" }, "Create account")),
    error);
  }

  function when(iso) {
    return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function base64url(text) {
    const bytes = new TextEncoder().encode(text);
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // Live results for a poll: `onResults(results)` with the results as `GET …/results` gives
  // them, each time they change, and `onState(state)` with "live" (pushed over the socket),
  // "polling" (the socket is down: reading every few seconds, with If-None-Match so an
  // unchanged read is a 304), or "closed" (the poll closed: the final results, no more
  // reads). The socket speaks the AppSync Events protocol with a short-lived pass from
  // `POST …/live`; the dev server serves the same protocol on this origin. A dropped socket is
  // reopened with a fresh pass after 1, 2, 4 … 30 seconds (with jitter). `opts.invite` reads
  // with a guest's card. Returns a function that stops it all.
  function watchResults(pollId, opts) {
    const base = `/v1/polls/${encodeURIComponent(pollId)}`;
    const auth = opts.invite ? { invite: opts.invite } : {};
    let stopped = false, socket = null, attempt = 0, etag = null, results = null;
    let pollTimer = 0, retryTimer = 0, state = "";
    const setState = (s) => { if (s !== state) { state = s; opts.onState && opts.onState(s); } };

    async function read() {
      const headers = etag ? { "if-none-match": etag } : {};
      const r = await api("GET", base + "/results", Object.assign({ raw: true, headers }, auth));
      etag = r.etag || etag;
      if (r.status === 200) {
        results = r.data;
        opts.onResults(results);
      }
      return results;
    }

    // Polling, while the socket is down: every 3 seconds, skipped while the tab is hidden.
    function poll() {
      clearTimeout(pollTimer);
      pollTimer = setTimeout(async () => {
        if (stopped || state === "live") return;
        try {
          if (!document.hidden) await read();
        } catch (e) {
          if (opts.onError) opts.onError(e);
        }
        if (results && results.status !== "open") return finish();
        poll();
      }, 3000);
    }

    function finish() {
      setState("closed");
      stop();
    }

    function apply(event) {
      if (!results || event.total < results.total) return;
      const votes = event.votes || {};
      results = Object.assign({}, results, {
        total: event.total,
        counted_through: event.counted_through,
        counted_at: event.counted_at,
        options: results.options.map((o) => Object.assign({}, o, { votes: votes[o.id] || 0 })),
      });
      opts.onResults(results);
    }

    function retry() {
      if (stopped) return;
      if (state !== "closed") setState("polling");
      poll();
      const wait = Math.min(30000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt += 1;
      clearTimeout(retryTimer);
      retryTimer = setTimeout(connect, wait);
    }

    async function connect() {
      if (stopped) return;
      let pass;
      try {
        pass = await api("POST", base + "/live", auth);
      } catch (e) {
        // Not allowed to watch (results shown after the close) or not reachable: polling
        // only, trying the socket again later unless it was refused outright.
        if (e.status === 403 || e.status === 404 || e.status === 410) { setState("polling"); poll(); return; }
        return retry();
      }
      const header = "header-" + base64url(JSON.stringify({ host: pass.host, Authorization: pass.pass }));
      try {
        socket = new WebSocket(pass.realtime_url, [pass.protocol, header]);
      } catch {
        return retry();
      }
      const ws = socket;
      ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init" }));
      ws.onmessage = (message) => {
        let m;
        try { m = JSON.parse(message.data); } catch { return; }
        if (m.type === "connection_ack") {
          ws.send(JSON.stringify({ type: "subscribe", id: "results", channel: pass.channel,
            authorization: { host: pass.host, Authorization: pass.pass } }));
        } else if (m.type === "subscribe_success") {
          attempt = 0;
          setState("live");
          // Whatever changed before the subscription took, read once.
          read().catch(() => {});
        } else if (m.type === "data") {
          try { apply(JSON.parse(m.event)); } catch { /* A malformed event: the next one counts. */ }
        } else if (m.type === "subscribe_error" || m.type === "error") {
          ws.close();
        }
      };
      ws.onclose = () => { if (socket === ws) { socket = null; retry(); } };
    }

    function stop() {
      stopped = true;
      clearTimeout(pollTimer);
      clearTimeout(retryTimer);
      if (socket) { const ws = socket; socket = null; ws.close(); }
    }

    read().then((r) => {
      if (stopped) return;
      if (r && r.status !== "open") return finish();
      connect();
    }, (e) => { if (opts.onError) opts.onError(e); retry(); });
    return stop;
  }

  // The results as a guest or a voter sees them after voting, kept live: an element that
  // stays empty while the poll keeps its results until the close, and fills in when they may
  // be shown. Returns [element, stop].
  function liveResults(pollId, opts = {}) {
    const box = h("div", { class: "live-results" });
    const stop = watchResults(pollId, {
      invite: opts.invite,
      onResults: (r) => {
        const badge = h("span", { class: "live-badge", role: "status", "data-state": box.dataset.state || "" },
          r.status === "open" ? (box.dataset.state === "live" ? "● Live" : "Updating") : "Final");
        show(box, h("h2", null, r.status === "closed" ? "Final results" : "Results so far", " ", badge),
          h("ul", { class: "results", "aria-label": "Results" },
            r.options.map((o) => h("li", null, h("span", null, o.text), " ", h("strong", null, String(o.votes))))),
          h("p", { class: "muted small" }, `${r.total} ${r.total === 1 ? "vote" : "votes"} in all.`));
      },
      onState: (state) => {
        box.dataset.state = state;
        const badge = box.querySelector(".live-badge");
        if (badge) {
          badge.dataset.state = state;
          badge.textContent = state === "live" ? "● Live" : state === "closed" ? "Final" : "Updating";
        }
      },
    });
    return [box, stop];
  }

  return {
    api, signIn, signInForm, problemText, h, show, when, ApiError, watchResults, liveResults,
    get session() { return session; },
    signOut,
    onSignedOut() {},
  };
})();
