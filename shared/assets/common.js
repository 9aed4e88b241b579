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
    if (!response.ok) throw new ApiError(response.status, data || {});
    return data;
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

  return {
    api, signIn, signInForm, problemText, h, show, when, ApiError,
    get session() { return session; },
    signOut,
    onSignedOut() {},
  };
})();
