// The local agent: version and configuration summary (`/v1/agent/self`), the LAN members it
// sees (`/v1/agent/members`), and on servers the Raft peers and leader
// (`/v1/operator/raft/configuration`, `/v1/status/leader`). These endpoints do not block,
// so the view refreshes them every 10 s while it is shown.

import { poll, request } from "../api.js";
import { h, replace, badge, grid, errorBox, table, td, meta } from "../dom.js";
import { MEMBER_STATUS, role } from "./nodes.js";

/** Shows the local agent. */
export function render(ctx) {
  const { root, signal, link } = ctx;
  ctx.setTitle("Agent");
  let self = null;
  let members = null;
  let raft = null;
  let leader = null;
  const errors = {};

  const live = h("span", { class: "live", "aria-live": "polite", text: "Refreshed every 10 s" });
  const messages = h("div");
  const about = h("div", { id: "agent-about" }, h("p", { class: "muted", text: "Loading…" }));
  const raftBox = h("div", { id: "agent-raft" });
  const memberBox = h("div", { id: "agent-members" });
  root.append(
    h("div", { class: "head" }, h("h1", { text: "Agent" }), live),
    messages,
    about,
    h("h2", { text: "Raft" }),
    raftBox,
    h("h2", { text: "LAN members" }),
    memberBox,
  );

  function draw() {
    replace(messages, Object.entries(errors).filter(([, e]) => e).map(([w, e]) => errorBox(e, w)));
    if (self) {
      const c = self.Config || {};
      const d = self.DebugConfig || {};
      const version = [c.Version, c.VersionPrerelease].filter(Boolean).join("-");
      replace(
        about,
        h(
          "div",
          { class: "panel" },
          grid([
            ["Node", h("a", { href: link("nodes", c.NodeName), text: c.NodeName })],
            ["Datacenter", c.Datacenter],
            ["Mode", c.Server ? "server" : "client"],
            ["Version", h("span", { id: "agent-version", text: `${version}${c.CairnVersion ? ` (${c.Product || "cairn"} ${c.CairnVersion})` : ""}` })],
            ["Revision", c.Revision || "–"],
            ["Node ID", h("span", { class: "mono", text: c.NodeID })],
            d.DevMode !== undefined && ["Dev mode", d.DevMode ? "yes" : "no"],
            d.Bootstrap !== undefined && ["Bootstrap", `${d.Bootstrap ? "yes" : "no"}${d.BootstrapExpect ? `, expect ${d.BootstrapExpect}` : ""}`],
            d.BindAddr && ["Bind address", d.BindAddr],
            d.AdvertiseAddrLAN && ["Advertise (LAN)", d.AdvertiseAddrLAN],
            d.ClientAddrs && ["Client addresses", d.ClientAddrs.join(", ")],
            ["Ports", ["HTTPPort", "DNSPort", "ServerPort", "SerfPortLAN"].filter((k) => d[k] !== undefined).map((k) => `${k.replace("Port", "")} ${d[k]}`).join(", ") || "–"],
            d.DataDir !== undefined && ["Data directory", d.DataDir || "(in memory)"],
            d.LogLevel && ["Log level", d.LogLevel],
            d.ACLsEnabled !== undefined && ["ACLs", d.ACLsEnabled ? "enabled" : "disabled"],
            d.RetryJoinLAN && d.RetryJoinLAN.length && ["Retry join", d.RetryJoinLAN.join(", ")],
            ["Node meta", meta(d.NodeMeta || self.Meta)],
          ]),
        ),
      );
    }
    if (self && !(self.Config || {}).Server) {
      replace(raftBox, h("p", { class: "muted", text: "This agent is a client: Raft runs on the servers." }));
    } else if (raft) {
      const rows = (raft.Servers || []).map((s) =>
        h(
          "tr",
          null,
          td("Node", h("a", { href: link("nodes", s.Node), text: s.Node })),
          td("Address", h("span", { class: "mono", text: s.Address })),
          td("ID", h("span", { class: "mono", text: s.ID })),
          td("Role", s.Leader ? badge("passing", "leader") : "follower"),
          td("Voter", s.Voter ? "yes" : "no"),
        ),
      );
      replace(
        raftBox,
        h("p", null, "Leader: ", h("span", { class: "mono", id: "raft-leader", text: leader === null ? "…" : leader || "none (no leader)" }), ` · configuration index ${raft.Index}`),
        table(["Node", "Address", "ID", "Role", "Voter"], rows, { label: "Raft peers" }),
      );
    }
    if (members) {
      const rows = members
        .slice()
        .sort((a, b) => a.Name.localeCompare(b.Name))
        .map((m) =>
          h(
            "tr",
            null,
            td("Name", h("a", { href: link("nodes", m.Name), text: m.Name })),
            td("Address", h("span", { class: "mono", text: `${m.Addr}:${m.Port}` })),
            td("Status", badge(MEMBER_STATUS[m.Status] || "unknown")),
            td("Role", role(m)),
            td("Datacenter", (m.Tags && m.Tags.dc) || "–"),
            td("Build", (m.Tags && m.Tags.build) || "–"),
          ),
        );
      replace(memberBox, table(["Name", "Address", "Status", "Role", "Datacenter", "Build"], rows, { label: "Members" }));
    }
  }

  const on = (what, set) => ({
    signal,
    onData(b) {
      set(b);
      errors[what] = null;
      draw();
    },
    onError(e) {
      errors[what] = e;
      draw();
    },
  });
  poll("/v1/agent/self", {}, on("Agent", (b) => (self = b)));
  poll("/v1/agent/members", {}, on("Members", (b) => (members = b || [])));
  poll(
    "/v1/operator/raft/configuration",
    { dc: undefined },
    on("Raft configuration", (b) => {
      raft = b;
      // The leader as the servers see it (`/v1/status/leader`).
      request("/v1/status/leader", { dc: undefined }, { signal })
        .then((r) => {
          leader = r.body;
          draw();
        })
        .catch((e) => {
          if (!signal.aborted) {
            errors.Leader = e;
            draw();
          }
        });
    }),
  );
}
