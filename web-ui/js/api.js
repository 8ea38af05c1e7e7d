// Talking to the agent: the public /v1 HTTP API only.
//
// - `request` adds the datacenter (`?dc=`) and the ACL token (`X-Consul-Token`), decodes
//   JSON, and turns HTTP errors into `ApiError` (with the agent's own text).
// - `watch` is one blocking-query loop: it sends `?index=<X-Consul-Index>&wait=...`, calls
//   back only when the index moved, backs off on errors and stops when its AbortSignal fires
//   (each view aborts its loops on navigation).
// - `poll` refreshes the few endpoints that are not blocking (agent self, members, Raft
//   configuration) at a slow, fixed pace.
// - Network failures flip a connectivity flag shown as a banner ("agent unreachable",
//   then "back") by app.js.

const TOKEN_KEY = "cairn.token";

/** Shared state: the datacenter in view, the agent's own datacenter, the token. */
export const state = {
  dc: "",
  localDc: "",
  token: "",
};

try {
  state.token = localStorage.getItem(TOKEN_KEY) || "";
} catch {
  // storage disabled: the token lives for this page only
}

/** Stores (or clears, with "") the ACL token sent with every request. */
export function setToken(token) {
  state.token = token;
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // ignore: kept in memory
  }
}

/** An HTTP error answered by the agent (as opposed to the agent not answering at all). */
export class ApiError extends Error {
  constructor(status, text, path) {
    let msg = `${status}${text ? ` ${text.trim()}` : ""} (${path})`;
    if (status === 403 || status === 401) msg += ". Set an ACL token with the “ACL token” button.";
    super(msg);
    this.status = status;
    this.path = path;
  }
}

/** The agent did not answer (connection refused, reset, timeout). */
export class NetworkError extends Error {}

// ---- connectivity -------------------------------------------------------------------

const listeners = new Set();
let reachable = true;

/** Calls `fn(reachable, error)` whenever the agent becomes unreachable or reachable again. */
export function onConnectivity(fn) {
  listeners.add(fn);
}

function setReachable(ok, err) {
  if (ok === reachable) return;
  reachable = ok;
  for (const fn of listeners) fn(ok, err);
}

/** True while the last request reached the agent. */
export function isReachable() {
  return reachable;
}

// ---- requests -----------------------------------------------------------------------

/**
 * Builds a `/v1` URL with query parameters; the datacenter in view is added as `dc`, except
 * for agent-local paths.
 */
export function url(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === false) continue;
    q.append(k, v === true ? "" : String(v));
  }
  // `{dc: undefined}` asks the local agent's datacenter explicitly.
  if (state.dc && !path.startsWith("/v1/agent/") && !("dc" in params)) q.set("dc", state.dc);
  // Flags such as `keys` or `recurse` are sent without `=`.
  const qs = q.toString().replace(/=(&|$)/g, "$1");
  return qs ? `${path}?${qs}` : path;
}

/** Encodes a name for a path segment (service, node, KV key parts keep their slashes). */
export function seg(name) {
  return encodeURIComponent(name);
}

/** Encodes a KV key for `/v1/kv/<key>`: each part encoded, slashes kept. */
export function kvPath(key) {
  return key.split("/").map(encodeURIComponent).join("/");
}

/**
 * One request. Returns `{status, index, body, headers}`; `body` is decoded JSON when the
 * answer is JSON, else text. Throws `ApiError` on HTTP errors (except 404 when `allow404`)
 * and `NetworkError` when the agent does not answer. `timeoutMs` bounds the whole request.
 */
export async function request(path, params = {}, opts = {}) {
  const { method = "GET", body, signal, allow404 = false, timeoutMs = 20000 } = opts;
  const headers = {};
  if (state.token) headers["X-Consul-Token"] = state.token;
  const timeout = AbortSignal.timeout(timeoutMs);
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
  const target = url(path, params);
  let resp;
  try {
    resp = await fetch(target, { method, body, headers, signal: combined, cache: "no-store" });
  } catch (e) {
    if (signal && signal.aborted) throw e; // navigation: not an outage
    const err = new NetworkError(
      timeout.aborted ? `no answer from the agent within ${timeoutMs / 1000}s` : `cannot reach the agent (${e.message})`,
    );
    setReachable(false, err);
    throw err;
  }
  setReachable(true);
  const index = resp.headers.get("X-Consul-Index");
  const type = resp.headers.get("Content-Type") || "";
  let text;
  try {
    text = await resp.text();
  } catch (e) {
    if (signal && signal.aborted) throw e;
    throw new NetworkError(`the answer was cut (${e.message})`);
  }
  if (!resp.ok && !(allow404 && resp.status === 404)) {
    throw new ApiError(resp.status, text || resp.statusText, `${method} ${path}`);
  }
  let data = text;
  if (resp.status === 404) data = null;
  else if (type.includes("json") && text !== "") {
    try {
      data = JSON.parse(text);
    } catch {
      throw new ApiError(resp.status, "the answer is not valid JSON", `${method} ${path}`);
    }
  }
  return { status: resp.status, index, body: data, headers: resp.headers };
}

/** GET and return the decoded body. */
export async function get(path, params, opts) {
  return (await request(path, params, opts)).body;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal && signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      if (signal) signal.removeEventListener("abort", done);
      resolve();
    }
    if (signal) signal.addEventListener("abort", done, { once: true });
  });
}

/** How long a blocking query waits on the server (the browser allows it 20 s more). */
export const WAIT_SECONDS = 60;

/**
 * A blocking-query loop on `path`. `onData(body, resp)` runs for the first answer and then
 * whenever `X-Consul-Index` moves; `onError(err)` runs on every failure (the loop retries
 * with backoff: 1, 2, 4, 8, 10 s). An index that goes backwards (restore, restart) is taken
 * as the new base, as Consul's documentation asks. Consecutive requests are at least
 * `minGap` ms apart, so a busy cluster cannot turn the loop into tight polling. Stops when
 * `signal` aborts.
 */
export async function watch(path, params, { signal, onData, onError, minGap = 300, allow404 = false }) {
  let index = 0;
  let failures = 0;
  while (!signal.aborted) {
    const started = Date.now();
    try {
      const q = { ...params };
      if (index > 0) {
        q.index = index;
        q.wait = `${WAIT_SECONDS}s`;
      }
      const r = await request(path, q, {
        signal,
        allow404,
        timeoutMs: index > 0 ? (WAIT_SECONDS + 20) * 1000 : 20000,
      });
      if (signal.aborted) return;
      failures = 0;
      const next = Number(r.index);
      if (!r.index || !Number.isFinite(next)) {
        // Not a blocking endpoint after all: fall back to slow polling.
        onData(r.body, r);
        await sleep(POLL_MS, signal);
        continue;
      }
      if (index === 0 || next !== index) onData(r.body, r);
      index = Math.max(next, 1);
    } catch (e) {
      if (signal.aborted) return;
      failures += 1;
      onError(e);
      index = 0; // after an outage, start over with a fresh read
      await sleep(Math.min(1000 * 2 ** (failures - 1), 10000), signal);
      continue;
    }
    const spent = Date.now() - started;
    if (spent < minGap) await sleep(minGap - spent, signal);
  }
}

/** Pace of `poll` for endpoints without blocking support. */
export const POLL_MS = 10000;

/**
 * Fetches `path` now and then every `every` ms until `signal` aborts; `onData` on every
 * answer, `onError` on failures (retried at the same pace, sooner after the first failure).
 */
export async function poll(path, params, { signal, onData, onError, every = POLL_MS }) {
  let failures = 0;
  while (!signal.aborted) {
    try {
      const r = await request(path, params, { signal });
      if (signal.aborted) return;
      failures = 0;
      onData(r.body, r);
    } catch (e) {
      if (signal.aborted) return;
      failures += 1;
      onError(e);
    }
    await sleep(failures ? Math.min(1000 * 2 ** (failures - 1), every) : every, signal);
  }
}

/** Runs async `tasks` (functions) with at most `n` in flight. */
export async function limited(n, tasks) {
  let next = 0;
  const workers = Array.from({ length: Math.min(n, tasks.length) }, async () => {
    while (next < tasks.length) {
      const i = next++;
      await tasks[i]();
    }
  });
  await Promise.all(workers);
}
