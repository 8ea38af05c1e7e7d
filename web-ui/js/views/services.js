// Services: every service of the datacenter with its tags and instance counts by health,
// searchable and filterable by name, tag and health, sortable, paginated.
//
// Live data, all through the public API:
// - `/v1/catalog/services` (blocking): the names and tags;
// - `/v1/health/state/any` (blocking): every check, from which each service's instances that
//   have checks, and their health, are derived at once for the whole list (for the health
//   filter and sort);
// - `/v1/health/service/<name>` (one plain request per row on the visible page, four at a
//   time): the exact counts, including instances without checks. Rows are refetched when
//   the catalog moves or when one of their checks changes, at most once a second.

import { watch, request, seg, limited, sleep } from "../api.js";
import { h, replace, counts, tags, errorBox, table, td, worst, statusRank } from "../dom.js";
import { pager, slice, clampPage, debounce } from "../list.js";

/** Shows the services list. */
export function render(ctx) {
  const { root, signal, link } = ctx;
  ctx.setTitle("Services");
  const q = ctx.query;
  const ui = {
    q: q.get("q") || "",
    tag: q.get("tag") || "",
    status: q.get("status") || "",
    sort: q.get("sort") || "name",
    page: Number(q.get("page") || 1) - 1,
  };

  let catalog = null; // name -> tags
  let derived = new Map(); // name -> {passing, warning, critical}, from all checks
  let fingerprints = new Map(); // name -> string of its checks' ModifyIndex values
  const exact = new Map(); // name -> {counts, stamp}
  let catalogStamp = 0;
  const dirty = new Set(); // names whose checks changed since their exact counts
  let nodeStamp = "";
  let errors = { catalog: null, health: null, rows: null };

  const status = h("span", { class: "live", "aria-live": "polite" });
  const onSearch = debounce(() => {
    ui.q = search.value.trim();
    ui.page = 0;
    update();
  }, 120);
  const search = h("input", {
    type: "search",
    placeholder: "Filter by name…  ( / )",
    value: ui.q,
    "aria-label": "Filter services by name",
    oninput: onSearch,
    onchange: onSearch,
  });
  const tagSelect = h("select", {
    "aria-label": "Tag",
    onchange: () => {
      ui.tag = tagSelect.value;
      ui.page = 0;
      update();
    },
  });
  const statusSelect = h(
    "select",
    {
      "aria-label": "Health",
      onchange: () => {
        ui.status = statusSelect.value;
        ui.page = 0;
        update();
      },
    },
    [
      ["", "Any health"],
      ["passing", "Passing"],
      ["warning", "Warning"],
      ["critical", "Critical"],
    ].map(([v, t]) => h("option", { value: v, text: t })),
  );
  statusSelect.value = ui.status;
  const sortSelect = h(
    "select",
    {
      "aria-label": "Sort",
      onchange: () => {
        ui.sort = sortSelect.value;
        update();
      },
    },
    [
      ["name", "Name A–Z"],
      ["-name", "Name Z–A"],
      ["health", "Health (critical first)"],
      ["instances", "Most instances"],
    ].map(([v, t]) => h("option", { value: v, text: t })),
  );
  sortSelect.value = ui.sort;

  const messages = h("div");
  const list = h("div", { id: "services-list" }, h("p", { class: "muted", text: "Loading services…" }));
  root.append(
    h("div", { class: "head" }, h("h1", { text: "Services" }), status),
    h(
      "div",
      { class: "filters", role: "search" },
      h("label", null, "Name", search),
      h("label", null, "Tag", tagSelect),
      h("label", null, "Health", statusSelect),
      h("label", null, "Sort", sortSelect),
    ),
    messages,
    list,
  );

  /** Best known counts for a service: exact if fetched, else derived from checks. */
  function countsOf(name) {
    const e = exact.get(name);
    if (e) return e.counts;
    return derived.get(name) || null;
  }

  function matches(name) {
    if (ui.q && !name.toLowerCase().includes(ui.q.toLowerCase())) return false;
    if (ui.tag && !(catalog[name] || []).includes(ui.tag)) return false;
    if (ui.status) {
      // A service none of whose instances has a check is taken as passing (Consul counts
      // an instance without checks as passing) until its exact counts are known.
      const c = countsOf(name) || { passing: 1 };
      if (!c[ui.status]) return false;
    }
    return true;
  }

  function rank(name) {
    const c = countsOf(name);
    if (!c) return statusRank.none;
    if (c.critical) return statusRank.critical;
    if (c.warning) return statusRank.warning;
    if (c.passing) return statusRank.passing;
    return statusRank.none;
  }

  function total(name) {
    const c = countsOf(name);
    return c ? (c.passing || 0) + (c.warning || 0) + (c.critical || 0) : 0;
  }

  function sorted(names) {
    const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
    switch (ui.sort) {
      case "-name":
        return names.sort((a, b) => byName(b, a));
      case "health":
        return names.sort((a, b) => rank(a) - rank(b) || byName(a, b));
      case "instances":
        return names.sort((a, b) => total(b) - total(a) || byName(a, b));
      default:
        return names.sort(byName);
    }
  }

  function renderTags() {
    const all = new Set();
    for (const t of Object.values(catalog)) for (const x of t || []) all.add(x);
    const options = [h("option", { value: "", text: "Any tag" })];
    for (const t of [...all].sort()) options.push(h("option", { value: t, text: t }));
    if (ui.tag && !all.has(ui.tag)) options.push(h("option", { value: ui.tag, text: ui.tag }));
    tagSelect.replaceChildren(...options);
    tagSelect.value = ui.tag;
  }

  let visible = [];
  /** Redraws and then fetches exact counts of the rows that need them. */
  function update() {
    draw();
    refreshVisible();
  }

  /** Redraws the list from what is known (never fetches). */
  function draw() {
    ctx.setQuery({ q: ui.q, tag: ui.tag, status: ui.status, sort: ui.sort === "name" ? "" : ui.sort, page: ui.page ? ui.page + 1 : "" });
    replace(
      messages,
      errors.catalog && errorBox(errors.catalog, "Service list"),
      errors.health && errorBox(errors.health, "Health checks"),
      errors.rows && errorBox(errors.rows, "Instance counts"),
    );
    if (!catalog) return;
    const names = sorted(Object.keys(catalog).filter(matches));
    ui.page = clampPage(ui.page, names.length);
    visible = slice(names, ui.page);
    const go = (p) => {
      ui.page = p;
      update();
      list.querySelector("table")?.scrollIntoView({ block: "nearest" });
    };
    const rows = visible.map((name) => {
      const c = countsOf(name);
      return h(
        "tr",
        { dataset: { service: name } },
        td("Service", h("a", { href: link("services", name), "data-key": `svc:${name}`, text: name })),
        td("Tags", tags(catalog[name])),
        td("Instances", c ? counts(c) : h("span", { class: "muted", text: "…" }), "health"),
      );
    });
    replace(
      list,
      names.length
        ? [table(["Service", "Tags", "Instances by health"], rows, { label: "Services" }), pager(names.length, ui.page, go, "services")]
        : h("p", { class: "empty", text: Object.keys(catalog).length ? "No service matches the filters." : "No services registered." }),
    );
  }

  // Exact counts for the visible rows, coalesced: at most one round per second.
  let fetching = false;
  let again = false;
  async function refreshVisible() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    try {
      do {
        again = false;
        const stale = visible.filter((n) => {
          const e = exact.get(n);
          return !e || e.stamp !== catalogStamp || dirty.has(n);
        });
        if (!stale.length) break;
        const started = Date.now();
        let changed = false;
        let failure = null;
        await limited(
          4,
          stale.map((name) => async () => {
            if (signal.aborted) return;
            const stamp = catalogStamp;
            dirty.delete(name);
            try {
              const r = await request(`/v1/health/service/${seg(name)}`, {}, { signal });
              const c = { passing: 0, warning: 0, critical: 0 };
              for (const e of r.body || []) c[worst((e.Checks || []).map((x) => x.Status))] += 1;
              const old = exact.get(name);
              if (!old || JSON.stringify(old.counts) !== JSON.stringify(c)) changed = true;
              exact.set(name, { counts: c, stamp });
            } catch (e) {
              if (!signal.aborted) failure = e;
            }
          }),
        );
        if (signal.aborted) return;
        if (errors.rows !== failure) {
          errors.rows = failure;
          changed = true;
        }
        if (changed) draw();
        if (failure) break; // the next data change (or the error backoff of the loops) retries
        const spent = Date.now() - started;
        if (again && spent < 1000) await sleep(1000 - spent, signal);
      } while (again && !signal.aborted);
    } finally {
      fetching = false;
    }
  }

  function stampText() {
    status.textContent = "Live";
    status.title = "Updated through blocking queries";
  }

  watch("/v1/catalog/services", {}, {
    signal,
    onData(body, r) {
      catalog = body || {};
      catalogStamp = Number(r.index) || catalogStamp + 1;
      errors.catalog = null;
      renderTags();
      stampText();
      update();
    },
    onError(e) {
      errors.catalog = e;
      status.textContent = "Reconnecting…";
      draw();
    },
  });

  // Every check of the datacenter: large on big clusters, so at most one answer a second.
  watch("/v1/health/state/any", {}, {
    signal,
    minGap: 1000,
    onData(body) {
      const nodeChecks = new Map(); // node -> statuses
      const inst = new Map(); // service -> Map(instanceKey -> statuses)
      const fp = new Map();
      let nodeFp = "";
      for (const c of body || []) {
        if (!c.ServiceName) {
          if (!nodeChecks.has(c.Node)) nodeChecks.set(c.Node, []);
          nodeChecks.get(c.Node).push(c.Status);
          nodeFp += `${c.Node}/${c.CheckID}:${c.ModifyIndex};`;
          continue;
        }
        if (!inst.has(c.ServiceName)) inst.set(c.ServiceName, new Map());
        const key = `${c.Node}\u0000${c.ServiceID}`;
        const m = inst.get(c.ServiceName);
        if (!m.has(key)) m.set(key, { node: c.Node, statuses: [] });
        m.get(key).statuses.push(c.Status);
        fp.set(c.ServiceName, `${fp.get(c.ServiceName) || ""}${c.Node}/${c.CheckID}:${c.ModifyIndex};`);
      }
      const d = new Map();
      for (const [name, m] of inst) {
        const cnt = { passing: 0, warning: 0, critical: 0 };
        for (const { node, statuses } of m.values()) cnt[worst([...statuses, ...(nodeChecks.get(node) || [])])] += 1;
        d.set(name, cnt);
      }
      // Which services need their exact counts again.
      if (nodeFp !== nodeStamp) {
        for (const n of exact.keys()) dirty.add(n);
        nodeStamp = nodeFp;
      } else {
        for (const n of new Set([...fp.keys(), ...fingerprints.keys()])) {
          if (fp.get(n) !== fingerprints.get(n)) dirty.add(n);
        }
      }
      derived = d;
      fingerprints = fp;
      errors.health = null;
      update();
    },
    onError(e) {
      errors.health = e;
      draw();
    },
  });
}
