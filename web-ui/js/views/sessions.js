// Sessions of the datacenter (`/v1/session/list`, blocking): who holds locks, on which node,
// with which behavior and TTL; a session can be invalidated. Paginated.

import { watch, request, seg } from "../api.js";
import { h, replace, errorBox, table, td, nanos } from "../dom.js";
import { pager, slice, clampPage } from "../list.js";

/** Shows the session list. */
export function render(ctx) {
  const { root, signal, link } = ctx;
  ctx.setTitle("Sessions");
  let sessions = null;
  let error = null;
  let page = Number(ctx.query.get("page") || 1) - 1;
  const live = h("span", { class: "live", "aria-live": "polite" });
  const messages = h("div");
  const list = h("div", { id: "sessions-list" }, h("p", { class: "muted", text: "Loading sessions…" }));
  root.append(
    h("div", { class: "head" }, h("h1", { text: "Sessions" }), live),
    h("p", { class: "muted", text: "Sessions hold KV locks; invalidating one releases or deletes its locks, per its behavior." }),
    messages,
    list,
  );

  async function destroy(s) {
    if (!confirm(`Invalidate session ${s.ID}?`)) return;
    try {
      await request(`/v1/session/destroy/${seg(s.ID)}`, {}, { method: "PUT" });
    } catch (e) {
      error = e;
      draw();
    }
  }

  function draw() {
    ctx.setQuery({ page: page ? page + 1 : "" });
    replace(messages, error && errorBox(error));
    if (!sessions) return;
    page = clampPage(page, sessions.length);
    const rows = slice(sessions, page).map((s) =>
      h(
        "tr",
        { dataset: { session: s.ID } },
        td("ID", h("span", { class: "mono", text: s.ID })),
        td("Name", s.Name || "–"),
        td("Node", h("a", { href: link("nodes", s.Node), text: s.Node })),
        td("Behavior", s.Behavior),
        td("TTL", s.TTL || "–"),
        td("Lock delay", nanos(s.LockDelay)),
        td("Checks", [...(s.NodeChecks || s.Checks || []), ...(s.ServiceChecks || []).map((c) => c.ID)].join(", ") || "–"),
        td("Created", String(s.CreateIndex)),
        td("", h("button", { type: "button", class: "danger", "aria-label": `Invalidate session ${s.ID}`, text: "Invalidate", onclick: () => destroy(s) })),
      ),
    );
    replace(
      list,
      sessions.length
        ? [
            table(["ID", "Name", "Node", "Behavior", "TTL", "Lock delay", "Checks", "Created (index)", ""], rows, { label: "Sessions" }),
            pager(sessions.length, page, (p) => ((page = p), draw()), "sessions"),
          ]
        : h("p", { class: "empty", text: "No sessions." }),
    );
  }

  watch("/v1/session/list", {}, {
    signal,
    onData(b) {
      sessions = (b || []).sort((a, z) => a.CreateIndex - z.CreateIndex);
      error = null;
      live.textContent = "Live";
      draw();
    },
    onError(e) {
      error = e;
      live.textContent = "Reconnecting…";
      draw();
    },
  });
}
