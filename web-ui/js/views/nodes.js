// Nodes: the catalog's nodes (`/v1/catalog/nodes`, blocking) merged with the gossip view of
// the local agent (`/v1/agent/members`: status and role; refreshed every 10 s and whenever
// the node list moves) and the checks of each node (`/v1/health/state/any`, blocking).
// Searchable by name or address, filterable by health, sortable, paginated.

import { watch, poll, get, state } from "../api.js";
import { h, replace, badge, counts, errorBox, table, td, worst, statusRank } from "../dom.js";
import { pager, slice, clampPage, debounce } from "../list.js";

/** Serf member status codes as names. */
export const MEMBER_STATUS = { 0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed" };

/** A member's role from its gossip tags. */
export function role(m) {
  if (!m) return "–";
  const r = m.Tags && m.Tags.role;
  return r === "consul" ? "server" : r === "node" ? "client" : r || "–";
}

/** Shows the node list. */
export function render(ctx) {
  const { root, signal, link } = ctx;
  ctx.setTitle("Nodes");
  const ui = {
    q: ctx.query.get("q") || "",
    status: ctx.query.get("status") || "",
    sort: ctx.query.get("sort") || "name",
    page: Number(ctx.query.get("page") || 1) - 1,
  };
  let nodes = null;
  let members = new Map();
  let checks = new Map(); // node -> [status]
  const errors = {};
  const local = ctx.dc === state.localDc;

  const live = h("span", { class: "live", "aria-live": "polite" });
  const onSearch = debounce(() => {
    ui.q = search.value.trim();
    ui.page = 0;
    draw();
  }, 120);
  const search = h("input", {
    type: "search",
    placeholder: "Filter by name or address…  ( / )",
    value: ui.q,
    "aria-label": "Filter nodes by name or address",
    oninput: onSearch,
    onchange: onSearch,
  });
  const statusSelect = h(
    "select",
    { "aria-label": "Health", onchange: () => ((ui.status = statusSelect.value), (ui.page = 0), draw()) },
    [["", "Any health"], ["passing", "Passing"], ["warning", "Warning"], ["critical", "Critical"]].map(([v, t]) => h("option", { value: v, text: t })),
  );
  statusSelect.value = ui.status;
  const sortSelect = h(
    "select",
    { "aria-label": "Sort", onchange: () => ((ui.sort = sortSelect.value), draw()) },
    [["name", "Name A–Z"], ["-name", "Name Z–A"], ["health", "Health (critical first)"]].map(([v, t]) => h("option", { value: v, text: t })),
  );
  sortSelect.value = ui.sort;
  const messages = h("div");
  const list = h("div", { id: "nodes-list" }, h("p", { class: "muted", text: "Loading nodes…" }));
  root.append(
    h("div", { class: "head" }, h("h1", { text: "Nodes" }), live),
    h(
      "div",
      { class: "filters", role: "search" },
      h("label", null, "Name or address", search),
      h("label", null, "Health", statusSelect),
      h("label", null, "Sort", sortSelect),
    ),
    messages,
    list,
  );

  const health = (n) => worst(checks.get(n) || []);
  function draw() {
    ctx.setQuery({ q: ui.q, status: ui.status, sort: ui.sort === "name" ? "" : ui.sort, page: ui.page ? ui.page + 1 : "" });
    replace(messages, Object.entries(errors).filter(([, e]) => e).map(([w, e]) => errorBox(e, w)));
    if (!nodes) return;
    const q = ui.q.toLowerCase();
    let shown = nodes.filter(
      (n) => (!q || n.Node.toLowerCase().includes(q) || n.Address.includes(q)) && (!ui.status || health(n.Node) === ui.status),
    );
    const byName = (a, b) => (a.Node < b.Node ? -1 : a.Node > b.Node ? 1 : 0);
    if (ui.sort === "-name") shown.sort((a, b) => byName(b, a));
    else if (ui.sort === "health") shown.sort((a, b) => statusRank[health(a.Node)] - statusRank[health(b.Node)] || byName(a, b));
    else shown.sort(byName);
    ui.page = clampPage(ui.page, shown.length);
    const rows = slice(shown, ui.page).map((n) => {
      const m = members.get(n.Node);
      const c = { passing: 0, warning: 0, critical: 0 };
      for (const s of checks.get(n.Node) || []) c[s] += 1;
      const gossip = m ? MEMBER_STATUS[m.Status] || String(m.Status) : local ? "not a member" : "–";
      return h(
        "tr",
        { dataset: { node: n.Node } },
        td("Node", h("a", { href: link("nodes", n.Node), "data-key": `node:${n.Node}`, text: n.Node })),
        td("Address", h("span", { class: "mono", text: n.Address })),
        td("Datacenter", n.Datacenter),
        td("Gossip", m || local ? badge(m ? gossip : "unknown", gossip) : h("span", { class: "muted", text: "–" })),
        td("Role", role(m)),
        td("Checks", (checks.get(n.Node) || []).length ? counts(c) : h("span", { class: "muted", text: "none" })),
      );
    });
    const go = (p) => {
      ui.page = p;
      draw();
    };
    replace(
      list,
      shown.length
        ? [table(["Node", "Address", "Datacenter", "Gossip", "Role", "Checks"], rows, { label: "Nodes" }), pager(shown.length, ui.page, go, "nodes")]
        : h("p", { class: "empty", text: nodes.length ? "No node matches the filters." : "No nodes." }),
    );
  }

  async function loadMembers() {
    if (!local) return; // the agent only knows its own datacenter's LAN pool
    try {
      const ms = await get("/v1/agent/members", {}, { signal });
      members = new Map((ms || []).map((m) => [m.Name, m]));
      errors["Gossip members"] = null;
    } catch (e) {
      if (signal.aborted) return;
      errors["Gossip members"] = e;
    }
    draw();
  }

  watch("/v1/catalog/nodes", {}, {
    signal,
    onData(b) {
      nodes = b || [];
      errors["Node list"] = null;
      live.textContent = "Live";
      draw();
      loadMembers();
    },
    onError(e) {
      errors["Node list"] = e;
      live.textContent = "Reconnecting…";
      draw();
    },
  });
  // Every check of the datacenter: large on big clusters, so at most one answer a second.
  watch("/v1/health/state/any", {}, {
    signal,
    minGap: 1000,
    onData(b) {
      const m = new Map();
      for (const c of b || []) {
        if (!m.has(c.Node)) m.set(c.Node, []);
        m.get(c.Node).push(c.Status);
      }
      checks = m;
      errors["Health checks"] = null;
      draw();
    },
    onError(e) {
      errors["Health checks"] = e;
      draw();
    },
  });
  if (local) {
    // Gossip status changes (a member failing) do not move catalog indexes at once.
    poll("/v1/agent/members", {}, {
      signal,
      onData(ms) {
        members = new Map((ms || []).map((m) => [m.Name, m]));
        errors["Gossip members"] = null;
        draw();
      },
      onError(e) {
        errors["Gossip members"] = e;
        draw();
      },
    });
  }
}
