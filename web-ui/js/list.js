// Paginated lists: only one page of rows is ever in the DOM, so lists of thousands of
// services or nodes render in a few milliseconds however large the datacenter.

import { h } from "./dom.js";

/** Rows per page. */
export const PAGE_SIZE = 50;

/**
 * Pager controls for `total` items at page `page` (0-based). `go(p)` switches pages.
 * Returns null when everything fits on one page.
 */
export function pager(total, page, go, what = "items") {
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const p = clampPage(page, total);
  const from = total ? p * PAGE_SIZE + 1 : 0;
  const to = Math.min(total, (p + 1) * PAGE_SIZE);
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    h("span", { "aria-live": "polite", text: `${from}–${to} of ${total} ${what}` }),
    pages > 1 && [
      h("button", { type: "button", disabled: p === 0, "data-key": "pager-first", onclick: () => go(0), text: "« First" }),
      h("button", { type: "button", disabled: p === 0, "data-key": "pager-prev", onclick: () => go(p - 1), text: "‹ Previous" }),
      h("span", { text: `Page ${p + 1} of ${pages}` }),
      h("button", { type: "button", disabled: p >= pages - 1, "data-key": "pager-next", onclick: () => go(p + 1), text: "Next ›" }),
      h("button", { type: "button", disabled: p >= pages - 1, "data-key": "pager-last", onclick: () => go(pages - 1), text: "Last »" }),
    ],
  );
}

/** A page number valid for `total` items. */
export function clampPage(page, total) {
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  return Math.min(Math.max(0, page | 0), pages - 1);
}

/** The items of page `page`. */
export function slice(items, page) {
  const p = clampPage(page, items.length);
  return items.slice(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
}

/** Debounces `fn` by `ms`. */
export function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
