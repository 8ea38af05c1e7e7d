// Key/Value: browse folders (`?keys&separator=/`), view, create, edit and delete keys.
//
// Writes use check-and-set: creating sends `?cas=0` (fails if the key exists), saving and
// deleting send `?cas=<ModifyIndex the editor started from>`, so two people editing the
// same key never overwrite each other silently: the second save is refused by the agent and
// reported as a conflict, with the other version shown and a choice to overwrite or reload.
// The key view is live (blocking query); while the editor has unsaved changes, updates from
// the server are announced instead of replacing the text. Flags are shown and editable; a
// held lock shows its session (holder).

import { watch, request, get, kvPath, seg } from "../api.js";
import { h, replace, errorBox, table, td, grid, nanos } from "../dom.js";
import { pager, slice, clampPage, debounce } from "../list.js";

/** Decodes a KV `Value` (base64 or null): `{text}` for UTF-8, `{binary: bytes}` otherwise. */
export function decodeValue(b64) {
  if (!b64) return { text: "" };
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
  } catch {
    return { binary: bytes };
  }
}

/** Shows a folder or a key, depending on the URL (folders end with `/`). */
export function render(ctx) {
  const key = ctx.rest.join("/");
  if (key === "" || key.endsWith("/")) folder(ctx, key);
  else keyView(ctx, key);
}

/** Breadcrumbs for a key or folder path. */
function crumbs(ctx, path) {
  const parts = path.split("/");
  const out = [h("a", { href: `${ctx.link("kv")}/`, text: "Key/Value" }), " / "];
  let acc = "";
  const last = path.endsWith("/") ? parts.length - 1 : parts.length;
  for (let i = 0; i < last - 1; i++) {
    acc += `${parts[i]}/`;
    out.push(h("a", { href: kvLink(ctx, acc), text: parts[i] || "(empty)" }), " / ");
  }
  return h("div", { class: "crumbs kv-path" }, out);
}

/** The dashboard URL of a key or folder. */
export function kvLink(ctx, key) {
  return ctx.link("kv", ...key.split("/"));
}

/** The folder containing `key` (with its trailing slash, "" for the root). */
function parentOf(key) {
  const trimmed = key.endsWith("/") ? key.slice(0, -1) : key;
  const i = trimmed.lastIndexOf("/");
  return i < 0 ? "" : trimmed.slice(0, i + 1);
}

function folder(ctx, prefix) {
  const { root, signal } = ctx;
  ctx.setTitle(prefix ? `KV ${prefix}` : "Key/Value");
  let keys = null;
  let error = null;
  let q = ctx.query.get("q") || "";
  let page = Number(ctx.query.get("page") || 1) - 1;

  const live = h("span", { class: "live", "aria-live": "polite" });
  const messages = h("div");
  const list = h("div", { id: "kv-list", class: "kv-list" }, h("p", { class: "muted", text: "Loading keys…" }));
  const onSearch = debounce(() => {
    q = search.value.trim();
    page = 0;
    draw();
  }, 120);
  const search = h("input", {
    type: "search",
    value: q,
    placeholder: "Filter this folder…  ( / )",
    "aria-label": "Filter keys in this folder",
    oninput: onSearch,
    onchange: onSearch,
  });

  // Create form.
  const newKey = h("input", { id: "kv-new-key", type: "text", required: true, spellcheck: "false", placeholder: "name, or name/ for a folder", size: 30 });
  const newValue = h("textarea", { id: "kv-new-value", rows: 5, spellcheck: "false" });
  const newFlags = h("input", { id: "kv-new-flags", type: "text", inputmode: "numeric", value: "0", size: 8, pattern: "[0-9]+" });
  const createMsg = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    {
      class: "panel",
      id: "kv-create",
      "aria-labelledby": "kv-create-title",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const rel = newKey.value.trim();
        if (!rel) return;
        if (!/^[0-9]+$/.test(newFlags.value.trim())) {
          replace(createMsg, errorBox("Flags must be an unsigned integer."));
          return;
        }
        const full = prefix + rel;
        const isFolder = full.endsWith("/");
        try {
          const r = await request(`/v1/kv/${kvPath(full)}`, { cas: 0, flags: newFlags.value.trim() }, { method: "PUT", body: isFolder ? "" : newValue.value });
          if (r.body === true) {
            ctx.navigate(kvLink(ctx, full));
          } else {
            replace(createMsg, h("div", { class: "conflict", role: "alert", text: `“${full}” already exists: it was not changed.` }));
          }
        } catch (e) {
          replace(createMsg, errorBox(e, "Create"));
        }
      },
    },
    h("h2", { id: "kv-create-title", text: `Create in ${prefix || "/"}` }),
    h("div", { class: "filters" }, h("label", null, "Key", newKey), h("label", null, "Flags", newFlags)),
    h("label", { class: "block" }, "Value", newValue),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "kv-create-button", text: "Create" })),
    createMsg,
  );

  const deleteButton =
    prefix &&
    h("button", {
      type: "button",
      class: "danger",
      text: "Delete folder",
      onclick: async () => {
        if (!confirm(`Delete “${prefix}” and every key under it?`)) return;
        try {
          await request(`/v1/kv/${kvPath(prefix)}`, { recurse: true }, { method: "DELETE" });
          ctx.navigate(kvLink(ctx, parentOf(prefix)));
        } catch (e) {
          error = e;
          draw();
        }
      },
    });

  root.append(
    crumbs(ctx, prefix),
    h("div", { class: "head" }, h("h1", { class: "kv-path", text: prefix || "Key/Value" }), live),
    h("div", { class: "filters", role: "search" }, h("label", null, "Filter", search), deleteButton),
    messages,
    list,
    form,
  );

  function draw() {
    ctx.setQuery({ q, page: page ? page + 1 : "" });
    replace(messages, error && errorBox(error, "Keys"));
    if (!keys) return;
    const entries = keys
      .filter((k) => k !== prefix)
      .map((k) => ({ full: k, name: k.slice(prefix.length), folder: k.endsWith("/") }))
      .filter((e) => !q || e.name.toLowerCase().includes(q.toLowerCase()))
      .sort((a, b) => (a.folder !== b.folder ? (a.folder ? -1 : 1) : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    page = clampPage(page, entries.length);
    const rows = slice(entries, page).map((e) =>
      h(
        "tr",
        { dataset: { key: e.full } },
        td("Name", h("a", { href: kvLink(ctx, e.full), class: e.folder ? "folder" : "key", "data-key": `kv:${e.full}`, text: e.name || "(empty name)" })),
        td("Type", e.folder ? "folder" : "key"),
      ),
    );
    replace(
      list,
      entries.length
        ? [table(["Name", "Type"], rows, { label: "Keys" }), pager(entries.length, page, (p) => ((page = p), draw()), "entries")]
        : h("p", { class: "empty", text: keys.length ? "Nothing matches the filter." : "This folder is empty." }),
    );
  }

  watch(`/v1/kv/${kvPath(prefix)}`, { keys: true, separator: "/" }, {
    signal,
    allow404: true,
    onData(b) {
      keys = Array.isArray(b) ? b : [];
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

function keyView(ctx, key) {
  const { root, signal } = ctx;
  ctx.setTitle(`KV ${key}`);
  let current; // latest entry from the server (null: absent)
  let base = null; // {index, text, flags} the editor started from
  let error = null;
  let holder = null;

  const live = h("span", { class: "live", "aria-live": "polite" });
  const messages = h("div");
  const metaBox = h("div", { class: "panel" }, h("p", { class: "muted", text: "Loading…" }));
  const notice = h("div", { id: "kv-notice", "aria-live": "polite" });
  const result = h("div", { id: "kv-result", "aria-live": "assertive" });
  const value = h("textarea", { id: "kv-value", rows: 8, spellcheck: "false", "aria-label": "Value", oninput: () => drawNotice() });
  const flags = h("input", { id: "kv-flags", type: "text", inputmode: "numeric", size: 12, pattern: "[0-9]+", oninput: () => drawNotice() });
  const binaryNote = h("p", { class: "muted", hidden: true });
  const save = h("button", { type: "submit", class: "primary", id: "kv-save", text: "Save" });
  const del = h("button", { type: "button", class: "danger", id: "kv-delete", text: "Delete", onclick: () => remove() });
  const format = h("button", {
    type: "button",
    text: "Format JSON",
    onclick: () => {
      try {
        value.value = JSON.stringify(JSON.parse(value.value), null, 2);
        drawNotice();
      } catch (e) {
        replace(result, errorBox(`Not JSON: ${e.message}`));
      }
    },
  });
  const form = h(
    "form",
    {
      class: "panel",
      id: "kv-editor",
      onsubmit: (ev) => {
        ev.preventDefault();
        saveValue(base ? base.index : 0);
      },
    },
    binaryNote,
    h("label", { class: "block" }, "Value", value),
    h("div", { class: "filters" }, h("label", null, "Flags", flags)),
    h("div", { class: "actions" }, save, format, del),
    notice,
    result,
  );
  root.append(
    crumbs(ctx, key),
    h("div", { class: "head" }, h("h1", { class: "kv-path", text: key }), live),
    messages,
    metaBox,
    form,
  );

  const dirty = () => base !== null && (value.value !== base.text || flags.value.trim() !== String(base.flags));

  /** Loads an entry into the editor (the new base of check-and-set). */
  function load(entry) {
    if (!entry) {
      base = null;
      value.value = "";
      flags.value = "0";
      return;
    }
    const v = decodeValue(entry.Value);
    if (v.binary) {
      binaryNote.hidden = false;
      binaryNote.textContent = `Binary value (${v.binary.length} bytes), shown as base64. Saving stores the text as it is in the box.`;
      base = { index: entry.ModifyIndex, text: entry.Value, flags: entry.Flags };
    } else {
      binaryNote.hidden = true;
      base = { index: entry.ModifyIndex, text: v.text, flags: entry.Flags };
    }
    value.value = base.text;
    flags.value = String(entry.Flags);
  }

  function drawMeta() {
    replace(messages, error && errorBox(error, "Live updates"));
    if (current === undefined) return;
    if (current === null) {
      replace(metaBox, h("p", { class: "empty", text: "This key does not exist (any more). Saving creates it." }));
      return;
    }
    const e = current;
    let lock = h("span", { class: "muted", text: "not locked" });
    if (e.Session) {
      lock = h(
        "span",
        null,
        "held by session ",
        h("a", { href: ctx.link("sessions"), class: "mono", text: e.Session }),
        holder && holder.ID === e.Session
          ? [
              holder.Name ? ` “${holder.Name}”` : "",
              " on node ",
              h("a", { href: ctx.link("nodes", holder.Node), text: holder.Node }),
              ` (behavior ${holder.Behavior}, lock delay ${nanos(holder.LockDelay)})`,
            ]
          : "",
      );
    }
    replace(
      metaBox,
      grid([
        ["Flags", String(e.Flags)],
        ["Lock", lock],
        ["Lock index", String(e.LockIndex)],
        ["Create index", String(e.CreateIndex)],
        ["Modify index", h("span", { id: "kv-modify-index", text: String(e.ModifyIndex) })],
      ]),
    );
  }

  function drawNotice() {
    const changed =
      base && dirty() && (current === null || (current && current.ModifyIndex !== base.index));
    replace(
      notice,
      changed &&
        h(
          "div",
          { class: "notice" },
          current === null
            ? "This key was deleted on the server while you were editing."
            : `This key changed on the server while you were editing (index ${base.index} → ${current.ModifyIndex}). Saving will report a conflict.`,
        ),
    );
    save.disabled = base !== null && !dirty();
    del.disabled = !current;
  }

  async function loadHolder(id) {
    try {
      const s = await get(`/v1/session/info/${seg(id)}`, {}, { signal });
      holder = (s && s[0]) || null;
    } catch (e) {
      if (!signal.aborted) error = e;
    }
    drawMeta();
  }

  /** PUT with `cas=<index>`; a refusal is reported as a conflict with the other version. */
  async function saveValue(casIndex) {
    const f = flags.value.trim();
    if (!/^[0-9]+$/.test(f)) {
      replace(result, errorBox("Flags must be an unsigned integer."));
      return;
    }
    const text = value.value;
    replace(result);
    save.disabled = true;
    try {
      const r = await request(`/v1/kv/${kvPath(key)}`, { cas: casIndex, flags: f }, { method: "PUT", body: text });
      if (r.body === true) {
        // Learn the new ModifyIndex at once, so the next save starts from it.
        const now = await request(`/v1/kv/${kvPath(key)}`, {}, { allow404: true });
        current = now.body && now.body[0] ? now.body[0] : null;
        load(current);
        drawMeta();
        replace(result, h("div", { class: "ok", role: "status", text: `Saved (modify index ${current ? current.ModifyIndex : "?"}).` }));
      } else {
        await conflict(text, "save");
      }
    } catch (e) {
      replace(result, errorBox(e, "Save"));
    }
    drawNotice();
  }

  async function conflict(mine, what) {
    let theirs = null;
    try {
      const now = await request(`/v1/kv/${kvPath(key)}`, {}, { allow404: true });
      theirs = now.body && now.body[0] ? now.body[0] : null;
    } catch (e) {
      replace(result, errorBox(e, "Conflict, and the current value could not be read"));
      return;
    }
    const from = base ? base.index : 0;
    const tv = theirs ? decodeValue(theirs.Value) : null;
    replace(
      result,
      h(
        "div",
        { class: "conflict", role: "alert", id: "kv-conflict" },
        h("strong", { text: "Conflict: " }),
        theirs
          ? `someone else changed this key since you loaded it (you started from index ${from}, it is now at index ${theirs.ModifyIndex}). Your ${what} was not applied.`
          : `this key was deleted since you loaded it (index ${from}). Your ${what} was not applied.`,
        theirs && [h("h3", { text: "Their version" }), h("pre", { class: "output", text: tv.text ?? theirs.Value ?? "" })],
        h(
          "div",
          { class: "actions" },
          what === "save" &&
            h("button", {
              type: "button",
              id: "kv-overwrite",
              text: theirs ? "Overwrite with my version" : "Create it again with my version",
              onclick: () => {
                value.value = mine;
                saveValue(theirs ? theirs.ModifyIndex : 0);
              },
            }),
          h("button", {
            type: "button",
            id: "kv-reload",
            text: "Discard mine, load theirs",
            onclick: () => {
              current = theirs;
              load(theirs);
              drawMeta();
              replace(result);
              drawNotice();
            },
          }),
        ),
      ),
    );
  }

  async function remove() {
    if (!current) return;
    if (!confirm(`Delete “${key}”?`)) return;
    try {
      const r = await request(`/v1/kv/${kvPath(key)}`, { cas: base ? base.index : current.ModifyIndex }, { method: "DELETE" });
      if (r.body === true) ctx.navigate(kvLink(ctx, parentOf(key)));
      else await conflict(value.value, "delete");
    } catch (e) {
      replace(result, errorBox(e, "Delete"));
    }
  }

  watch(`/v1/kv/${kvPath(key)}`, {}, {
    signal,
    allow404: true,
    onData(b) {
      current = b && b[0] ? b[0] : null;
      error = null;
      live.textContent = "Live";
      if (!dirty()) load(current);
      if (current && current.Session && (!holder || holder.ID !== current.Session)) loadHolder(current.Session);
      drawMeta();
      drawNotice();
    },
    onError(e) {
      error = e;
      live.textContent = "Reconnecting…";
      drawMeta();
    },
  });
}
