// One node: its address, metadata and gossip status, the service instances it runs, its
// checks, and the sessions it holds. Live through blocking queries on
// `/v1/catalog/node/<n>`, `/v1/health/node/<n>` and `/v1/session/node/<n>`.

import { watch, get, request, seg, state } from "../api.js";
import { h, replace, badge, counts, tags, meta, grid, errorBox, table, td, worst, nanos } from "../dom.js";
import { checkLine } from "./service.js";
import { MEMBER_STATUS, role } from "./nodes.js";

/** Shows one node. */
export function render(ctx) {
  const { root, signal, link } = ctx;
  const name = ctx.rest.join("/");
  ctx.setTitle(name);
  let info;
  let checks = null;
  let sessions = null;
  let member = null;
  const errors = {};
  let first = true;

  const live = h("span", { class: "live", "aria-live": "polite" });
  const messages = h("div");
  const top = h("div", null, h("p", { class: "muted", text: "Loading node…" }));
  const svc = h("div");
  const chk = h("div");
  const ses = h("div");
  root.append(
    h("div", { class: "crumbs" }, h("a", { href: link("nodes"), text: "Nodes" }), " / "),
    h("div", { class: "head" }, h("h1", { text: name }), live),
    messages,
    top,
    h("h2", { id: "services-title", text: "Service instances" }),
    svc,
    h("h2", { id: "checks-title", text: "Health checks" }),
    chk,
    h("h2", { id: "sessions-title", text: "Lock sessions" }),
    ses,
  );

  function draw() {
    replace(messages, Object.entries(errors).filter(([, e]) => e).map(([w, e]) => errorBox(e, w)));
    if (info === undefined) return;
    if (info === null || !info.Node) {
      replace(top, h("p", { class: "empty", text: "This node is not in the catalog of this datacenter." }));
      replace(svc);
      return;
    }
    const n = info.Node;
    const nodeChecks = (checks || []).filter((c) => !c.ServiceID);
    replace(
      top,
      h(
        "div",
        { class: "panel" },
        grid([
          ["Health", badge(worst(nodeChecks.map((c) => c.Status)))],
          ["Address", h("span", { class: "mono", text: n.Address })],
          ["Datacenter", n.Datacenter],
          ["ID", h("span", { class: "mono", text: n.ID || "–" })],
          ["Gossip", member ? badge(MEMBER_STATUS[member.Status] || "unknown") : "–"],
          ["Role", role(member)],
          member && ["Gossip address", h("span", { class: "mono", text: `${member.Addr}:${member.Port}` })],
          ["Tagged addresses", meta(n.TaggedAddresses)],
          ["Meta", meta(n.Meta)],
        ]),
      ),
    );
    const services = Object.values(info.Services || {}).sort((a, b) => a.ID.localeCompare(b.ID));
    const rows = services.map((s) => {
      const own = (checks || []).filter((c) => c.ServiceID === s.ID).map((c) => c.Status);
      const status = worst([...own, ...nodeChecks.map((c) => c.Status)]);
      return h(
        "tr",
        null,
        td("Service", h("a", { href: link("services", s.Service), text: s.Service })),
        td("ID", h("span", { class: "mono", text: s.ID })),
        td("Address", h("span", { class: "mono", text: `${s.Address || n.Address}:${s.Port}` })),
        td("Tags", tags(s.Tags)),
        td("Health", badge(status)),
      );
    });
    replace(
      svc,
      services.length
        ? table(["Service", "ID", "Address", "Tags", "Health"], rows, { label: "Service instances" })
        : h("p", { class: "empty", text: "No services on this node." }),
    );
  }

  function drawChecks() {
    if (!checks) return;
    const c = { passing: 0, warning: 0, critical: 0 };
    for (const x of checks) c[x.Status] += 1;
    replace(
      chk,
      checks.length
        ? h("div", { class: "panel" }, h("p", null, counts(c)), checks.map((x) => checkLine(x, { link, first })))
        : h("p", { class: "empty", text: "No checks." }),
    );
  }

  function drawSessions() {
    if (!sessions) return;
    const rows = sessions.map((s) =>
      h(
        "tr",
        null,
        td("ID", h("span", { class: "mono", text: s.ID })),
        td("Name", s.Name || "–"),
        td("Behavior", s.Behavior),
        td("TTL", s.TTL || "–"),
        td("Lock delay", nanos(s.LockDelay)),
        td("Checks", [...(s.NodeChecks || s.Checks || []), ...(s.ServiceChecks || []).map((c) => c.ID)].join(", ") || "–"),
        td(
          "",
          h("button", {
            type: "button",
            class: "danger",
            text: "Invalidate",
            "aria-label": `Invalidate session ${s.ID}`,
            onclick: async () => {
              if (!confirm(`Invalidate session ${s.ID}? Locks it holds are released or deleted per its behavior.`)) return;
              try {
                await request(`/v1/session/destroy/${seg(s.ID)}`, {}, { method: "PUT" });
              } catch (e) {
                errors["Invalidate session"] = e;
                draw();
              }
            },
          }),
        ),
      ),
    );
    replace(
      ses,
      sessions.length
        ? table(["ID", "Name", "Behavior", "TTL", "Lock delay", "Checks", ""], rows, { label: "Sessions" })
        : h("p", { class: "empty", text: "No sessions." }),
    );
  }

  const fail = (what) => (e) => {
    errors[what] = e;
    live.textContent = "Reconnecting…";
    draw();
  };
  watch(`/v1/catalog/node/${seg(name)}`, {}, {
    signal,
    allow404: true,
    onData(b) {
      info = b;
      errors.Node = null;
      live.textContent = "Live";
      draw();
    },
    onError: fail("Node"),
  });
  watch(`/v1/health/node/${seg(name)}`, {}, {
    signal,
    onData(b) {
      checks = (b || []).sort((a, z) => (a.ServiceID + a.CheckID).localeCompare(z.ServiceID + z.CheckID));
      errors.Checks = null;
      draw();
      drawChecks();
      first = false;
    },
    onError: fail("Checks"),
  });
  watch(`/v1/session/node/${seg(name)}`, {}, {
    signal,
    onData(b) {
      sessions = b || [];
      errors.Sessions = null;
      drawSessions();
      draw();
    },
    onError: fail("Sessions"),
  });
  if (ctx.dc === state.localDc) {
    get("/v1/agent/members", {}, { signal })
      .then((ms) => {
        member = (ms || []).find((m) => m.Name === name) || null;
        draw();
      })
      .catch((e) => {
        if (!signal.aborted) fail("Gossip members")(e);
      });
  }
}
