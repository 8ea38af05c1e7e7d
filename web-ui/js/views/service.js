// One service: its instances (node, address:port, tags, meta) and each instance's checks
// (node and service checks) with status, output and last change. One blocking query on
// `/v1/health/service/<name>` keeps it live.

import { watch, seg } from "../api.js";
import { h, replace, badge, counts, tags, meta, grid, errorBox, worst } from "../dom.js";
import { pager, slice, clampPage } from "../list.js";

/**
 * When this page first saw each check state (`node/checkID` + ModifyIndex): Consul's API
 * has no timestamps, so "last change" is the Raft index plus, for changes seen live, the
 * time the page saw them.
 */
const seen = new Map();

export function checkLine(c, { link, first }) {
  const key = `${c.Node}/${c.CheckID}`;
  const prev = seen.get(key);
  if (!prev || prev.index !== c.ModifyIndex) seen.set(key, { index: c.ModifyIndex, at: first ? null : new Date() });
  const s = seen.get(key);
  const when = s.at ? `, seen at ${s.at.toLocaleTimeString()}` : "";
  return h(
    "div",
    { class: "check", dataset: { check: c.CheckID, status: c.Status } },
    h(
      "div",
      { class: "line" },
      badge(c.Status),
      h("strong", { text: c.Name || c.CheckID }),
      h("code", { text: c.CheckID }),
      c.Type && h("span", { class: "muted", text: c.Type }),
      c.ServiceID ? null : h("span", { class: "muted" }, "node check on ", link ? h("a", { href: link("nodes", c.Node), text: c.Node }) : c.Node),
      h("span", { class: "muted", title: "Raft index of the last change of this check", text: `last change: index ${c.ModifyIndex}${when}` }),
    ),
    c.Notes && h("div", { class: "muted", text: c.Notes }),
    h("pre", { class: "output", "aria-label": "Output", text: c.Output || "(no output)" }),
  );
}

/** Shows one service. */
export function render(ctx) {
  const { root, signal, link } = ctx;
  const name = ctx.rest.join("/");
  ctx.setTitle(name);
  let page = Number(ctx.query.get("page") || 1) - 1;
  let entries = null;
  let error = null;
  let first = true;

  const live = h("span", { class: "live", "aria-live": "polite" });
  const summary = h("div");
  const body = h("div", { id: "instances" }, h("p", { class: "muted", text: "Loading instances…" }));
  root.append(
    h("div", { class: "crumbs" }, h("a", { href: link("services"), text: "Services" }), " / "),
    h("div", { class: "head" }, h("h1", { text: name }), live),
    summary,
    body,
  );

  function draw() {
    const list = entries || [];
    const c = { passing: 0, warning: 0, critical: 0 };
    for (const e of list) c[worst(e.Checks.map((x) => x.Status))] += 1;
    const allTags = new Set(list.flatMap((e) => e.Service.Tags || []));
    replace(
      summary,
      error && errorBox(error, "Live updates"),
      entries && h("div", { class: "panel" }, grid([["Instances", counts(c)], ["Tags", tags([...allTags])]])),
    );
    if (!entries) return;
    if (!list.length) {
      replace(body, h("p", { class: "empty", text: "No instances: this service is not registered in this datacenter." }));
      return;
    }
    page = clampPage(page, list.length);
    const go = (p) => {
      page = p;
      ctx.setQuery({ page: p ? p + 1 : "" });
      draw();
    };
    const items = slice(list, page).map((e) => {
      const s = e.Service;
      const addr = s.Address || e.Node.Address;
      const status = worst(e.Checks.map((x) => x.Status));
      return h(
        "section",
        { class: "panel instance", "aria-label": `Instance ${s.ID}`, dataset: { instance: s.ID, node: e.Node.Node } },
        h("h3", null, badge(status), " ", s.ID),
        grid([
          ["Node", h("a", { href: link("nodes", e.Node.Node), text: e.Node.Node })],
          ["Address", h("span", { class: "mono", text: `${addr}:${s.Port}` })],
          ["Tags", tags(s.Tags)],
          ["Meta", meta(s.Meta)],
          s.Kind && ["Kind", s.Kind],
        ]),
        h("h4", { text: `Checks (${e.Checks.length})` }),
        e.Checks.length
          ? e.Checks.map((x) => checkLine(x, { link, first }))
          : h("p", { class: "muted", text: "No checks: the instance counts as passing." }),
      );
    });
    replace(body, items, pager(list.length, page, go, "instances"));
  }

  watch(`/v1/health/service/${seg(name)}`, {}, {
    signal,
    onData(b) {
      entries = (b || []).sort((a, z) => (a.Node.Node + a.Service.ID).localeCompare(z.Node.Node + z.Service.ID));
      error = null;
      live.textContent = "Live";
      draw();
      first = false;
    },
    onError(e) {
      error = e;
      live.textContent = "Reconnecting…";
      draw();
    },
  });
}
