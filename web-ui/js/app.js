// The dashboard's shell: routing (History API, deep links under /ui/<dc>/...), the header
// (sections, datacenter switcher, theme, ACL token), the connectivity banner, and the
// lifecycle of views: each view gets an AbortSignal that is aborted when the user navigates
// away, which stops its blocking queries.
//
// URLs:  /ui/<dc>/services[?q=&tag=&status=&sort=&page=]   /ui/<dc>/services/<name>
//        /ui/<dc>/nodes[?...]   /ui/<dc>/nodes/<name>   /ui/<dc>/kv/<folder>/   /ui/<dc>/kv/<key>
//        /ui/<dc>/sessions   /ui/<dc>/agent

import { state, get, setToken, onConnectivity, sleep, ApiError } from "./api.js";
import { h, errorBox } from "./dom.js";
import * as services from "./views/services.js";
import * as service from "./views/service.js";
import * as nodes from "./views/nodes.js";
import * as node from "./views/node.js";
import * as kv from "./views/kv.js";
import * as sessions from "./views/sessions.js";
import * as agent from "./views/agent.js";

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const dcSelect = document.getElementById("dc-select");
let current = null; // { controller }
let firstRoute = true;

/** Splits a /ui/ path into decoded segments after `/ui/`. */
function segments(pathname) {
  const rest = pathname.replace(/^\/ui\/?/, "");
  return rest === "" ? [] : rest.split("/").map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
}

/** Builds a dashboard URL from a section and raw path parts (encoded here). */
export function link(section, ...parts) {
  const dc = encodeURIComponent(state.dc || state.localDc);
  const tail = parts.map((p) => encodeURIComponent(p)).join("/");
  return `/ui/${dc}/${section}${tail ? `/${tail}` : ""}`;
}

/** Goes to `href` without reloading the page. */
export function navigate(href, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  route();
}

/** Rewrites the query string of the current URL (filters, page) without a navigation. */
function setQuery(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined && v !== 0) q.set(k, v);
  const s = q.toString();
  history.replaceState(null, "", location.pathname + (s ? `?${s}` : ""));
}

function setTitle(t) {
  document.title = t ? `${t} · Cairn` : "Cairn";
}

const views = {
  services: (rest) => (rest.length ? service : services),
  nodes: (rest) => (rest.length ? node : nodes),
  kv: () => kv,
  sessions: () => sessions,
  agent: () => agent,
};

/** Shows the view for the current URL, stopping the previous view's loops. */
function route() {
  if (current) current.controller.abort();
  const controller = new AbortController();
  current = { controller };
  const segs = segments(location.pathname);
  if (segs.length === 0 || segs[0] === "") {
    history.replaceState(null, "", link("services"));
    return route();
  }
  const [dc, section = "services", ...rest] = segs;
  if (!section) {
    history.replaceState(null, "", `/ui/${encodeURIComponent(dc)}/services`);
    return route();
  }
  state.dc = dc;
  syncHeader(section);
  main.replaceChildren();
  const pick = views[section];
  const ctx = {
    root: main,
    dc,
    section,
    rest,
    rawPath: location.pathname,
    query: new URLSearchParams(location.search),
    signal: controller.signal,
    navigate,
    link,
    setQuery,
    setTitle,
  };
  if (!pick) {
    setTitle("Not found");
    main.append(
      h("h1", { text: "Not found" }),
      h("p", null, "There is no such page. ", h("a", { href: link("services"), text: "Go to services" }), "."),
    );
  } else {
    try {
      pick(rest).render(ctx);
    } catch (e) {
      main.append(errorBox(e, "This view failed"));
    }
  }
  if (!firstRoute) main.focus({ preventScroll: true });
  firstRoute = false;
  window.scrollTo(0, 0);
}

/** Section links carry the datacenter; the current section is marked. */
function syncHeader(section) {
  for (const a of document.querySelectorAll("#nav a[data-section]")) {
    a.href = link(a.dataset.section);
    if (a.dataset.section === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.querySelector(".brand").href = link("services");
  if (dcSelect.value !== state.dc) {
    if (![...dcSelect.options].some((o) => o.value === state.dc)) {
      dcSelect.append(h("option", { value: state.dc, text: state.dc }));
    }
    dcSelect.value = state.dc;
  }
}

// ---- links, history ------------------------------------------------------------------

document.addEventListener("click", (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download")) return;
  const u = new URL(a.href, location.href);
  if (u.origin !== location.origin || !u.pathname.startsWith("/ui/")) return;
  ev.preventDefault();
  navigate(u.pathname + u.search);
});
window.addEventListener("popstate", route);

// "/" focuses the search box of the view, as in many dashboards.
document.addEventListener("keydown", (ev) => {
  if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
  const search = main.querySelector("input[type=search]");
  if (search) {
    ev.preventDefault();
    search.focus();
  }
});

// ---- datacenter switcher ---------------------------------------------------------------

dcSelect.addEventListener("change", () => {
  const segs = segments(location.pathname);
  const section = segs[1] && views[segs[1]] ? segs[1] : "services";
  navigate(`/ui/${encodeURIComponent(dcSelect.value)}/${section}`);
});

async function loadDatacenters() {
  try {
    const dcs = await get("/v1/catalog/datacenters", { dc: undefined });
    const all = new Set([...(dcs || []), state.localDc, state.dc].filter(Boolean));
    dcSelect.replaceChildren(...[...all].map((d) => h("option", { value: d, text: d })));
    dcSelect.value = state.dc;
  } catch (e) {
    dcSelect.replaceChildren(h("option", { value: state.dc, text: state.dc }));
    dcSelect.title = `Could not list datacenters: ${e.message}`;
  }
}

// ---- theme -----------------------------------------------------------------------------

const themeButton = document.getElementById("theme-button");
function showTheme() {
  const t = document.documentElement.dataset.theme || "system";
  themeButton.title = `Theme: ${t === "system" ? "follows the system" : t} (click to change)`;
  themeButton.setAttribute("aria-label", themeButton.title);
}
themeButton.addEventListener("click", () => {
  const order = ["system", "light", "dark"];
  const now = document.documentElement.dataset.theme || "system";
  const next = order[(order.indexOf(now) + 1) % order.length];
  if (next === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = next;
  try {
    if (next === "system") localStorage.removeItem("cairn.theme");
    else localStorage.setItem("cairn.theme", next);
  } catch {
    // not persisted
  }
  showTheme();
});
showTheme();

// ---- ACL token ------------------------------------------------------------------------

const tokenDialog = document.getElementById("token-dialog");
const tokenInput = document.getElementById("token-input");
const tokenButton = document.getElementById("token-button");
function showToken() {
  tokenButton.textContent = state.token ? "ACL token ✓" : "ACL token";
}
tokenButton.addEventListener("click", () => {
  tokenInput.value = state.token;
  tokenDialog.showModal();
  tokenInput.focus();
});
tokenDialog.addEventListener("close", () => {
  const v = tokenDialog.returnValue;
  if (v === "save") setToken(tokenInput.value.trim());
  else if (v === "clear") setToken("");
  else return;
  showToken();
  if (document.body.dataset.ready === "true") route(); // reload the view's data with the new token
  else if (retryStart) retryStart(); // still starting: try again with the new token at once
});
showToken();

// ---- connectivity banner ---------------------------------------------------------------

let bannerTimer;
onConnectivity((ok, err) => {
  clearTimeout(bannerTimer);
  banner.hidden = false;
  if (ok) {
    banner.className = "banner up";
    banner.textContent = "The agent is reachable again. Live updates resumed.";
    bannerTimer = setTimeout(() => (banner.hidden = true), 5000);
  } else {
    banner.className = "banner down";
    banner.textContent = `Agent unreachable: ${err ? err.message : "no answer"}. Retrying…`;
  }
});

// ---- start -----------------------------------------------------------------------------

let retryStart = null;

async function start() {
  // The agent's own datacenter is the default; retry until the agent answers. An agent that
  // answers with an error (say, 403 without a token that may read it) still lets the views of
  // the datacenter named in the URL work.
  const urlDc = segments(location.pathname)[0];
  for (let attempt = 0; ; attempt++) {
    try {
      const self = await get("/v1/agent/self");
      state.localDc = self.Config.Datacenter;
      break;
    } catch (e) {
      if (e instanceof ApiError && urlDc) {
        state.localDc = urlDc;
        break;
      }
      main.replaceChildren(
        h("h1", { text: "Cairn" }),
        errorBox(e, "Cannot read /v1/agent/self"),
        h("p", { class: "muted", text: "Retrying…" }),
      );
      await Promise.race([sleep(Math.min(1000 * 2 ** attempt, 10000)), new Promise((r) => (retryStart = r))]);
      retryStart = null;
    }
  }
  if (!state.dc) state.dc = segments(location.pathname)[0] || state.localDc;
  document.body.dataset.ready = "true";
  route();
  loadDatacenters();
}

start();
