// Renders /v1/openapi.json as a list of operations: no framework, no other host.
"use strict";
(async function () {
  const root = document.getElementById("api");
  const doc = await (await fetch("/v1/openapi.json")).json();
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  root.textContent = "";
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      if (typeof op !== "object" || !op.responses) continue;
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push({ path, method, op });
    }
  }
  for (const [tag, ops] of byTag) {
    root.append(el("h2", tag));
    for (const { path, method, op } of ops) {
      const box = el("section", undefined, "op");
      const head = el("div");
      head.append(el("span", method, "method"), el("code", path));
      box.append(head);
      if (op.summary) box.append(el("p", op.summary));
      if (op.description) box.append(el("p", op.description));
      const statuses = el("div", undefined, "statuses");
      for (const [status, response] of Object.entries(op.responses)) {
        statuses.append(el("span", `${status}: ${response.description || ""}`));
      }
      box.append(statuses);
      root.append(box);
    }
  }
})();
