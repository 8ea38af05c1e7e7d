// Small DOM helpers. Everything is built with createElement/textContent, never by parsing
// strings of HTML, so data from the API (names, tags, outputs, values) cannot inject markup.

/**
 * Creates an element. `attrs` keys: `class`, `text`, `on<event>` (listener), `dataset`
 * (object), boolean attributes (true/false) and plain attributes; `children` may nest arrays
 * and skip null/false.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "value") el.value = v;
      else if (v === true) el.setAttribute(k, "");
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/**
 * Replaces the children of `el`, then gives focus back to the element with the same
 * `data-key` if the focus was inside `el`: live updates do not steal keyboard focus.
 */
export function replace(el, ...children) {
  const active = document.activeElement;
  const key = active && el.contains(active) ? active.dataset.key : undefined;
  el.replaceChildren();
  append(el, children);
  if (key !== undefined) {
    const again = el.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

/** A health or membership status as a coloured badge with a text label. */
export function badge(status, label) {
  const s = String(status || "unknown");
  return h("span", { class: `badge ${s}`, text: label ?? s });
}

/** Passing / warning / critical counts as badges (zeros omitted, "none" when all are). */
export function counts(c) {
  const parts = [];
  for (const s of ["passing", "warning", "critical"]) {
    if (c[s]) parts.push(badge(s, `${c[s]} ${s}`));
  }
  if (!parts.length) parts.push(badge("none", "no instances"));
  return h("span", { class: "counts" }, parts);
}

/** Tags as small chips. */
export function tags(list) {
  if (!list || !list.length) return h("span", { class: "muted", text: "–" });
  return [...new Set(list)].map((t) => h("span", { class: "tag", text: t }));
}

/** A `<dl>` of key/value pairs (values may be nodes). */
export function grid(pairs) {
  return h(
    "dl",
    { class: "grid" },
    pairs.filter(Boolean).map(([k, v]) => [h("dt", { text: k }), h("dd", null, v ?? "–")]),
  );
}

/** A map (Meta, NodeMeta) as a grid, or a dash. */
export function meta(m) {
  const entries = Object.entries(m || {});
  if (!entries.length) return h("span", { class: "muted", text: "–" });
  return grid(entries.sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, String(v)]));
}

/** An error message box (role=alert so screen readers announce it). */
export function errorBox(err, what) {
  const msg = err && err.message ? err.message : String(err);
  return h("div", { class: "error", role: "alert" }, what ? `${what}: ${msg}` : msg);
}

/** A table with a header row; `stack` makes it a list of cards on narrow screens. */
export function table(headers, rows, opts = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: opts.stack === false ? "" : "stack", "aria-label": opts.label },
      h("thead", null, h("tr", null, headers.map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", null, rows),
    ),
  );
}

/** A table cell with a label for the stacked (narrow screen) layout. */
export function td(label, content, cls) {
  return h("td", { "data-label": label, class: cls }, content);
}

/** Worst of a list of statuses: critical > warning > passing. */
export function worst(statuses) {
  let w = "passing";
  for (const s of statuses) {
    if (s === "critical") return "critical";
    if (s === "warning") w = "warning";
  }
  return w;
}

/** Rank of a status for sorting (critical first). */
export const statusRank = { critical: 0, warning: 1, passing: 2, none: 3 };

/** A compact "x ago" for a Date. */
export function ago(date) {
  if (!date) return "–";
  const s = Math.max(0, Math.round((Date.now() - date.getTime()) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return date.toLocaleString();
}

/** Nanoseconds (Consul durations in JSON) as a short text. */
export function nanos(ns) {
  if (typeof ns !== "number") return String(ns ?? "–");
  if (ns === 0) return "0s";
  if (ns % 1e9 === 0) return `${ns / 1e9}s`;
  return `${ns / 1e6}ms`;
}
