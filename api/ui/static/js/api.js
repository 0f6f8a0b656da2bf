// The HTTP API: the key from session storage goes out as X-API-Key on every call. EventSource cannot send
// headers, so the two SSE routes get it as ?api_key= (the server accepts that on those routes only).

const KEY = "taskyard.apiKey";
let unauthorized = () => {};

export function getKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
}

/** What to do when the server answers 401 (the app shows the key form). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function request(method, path, body) {
  const headers = {Accept: "application/json"};
  const key = getKey();
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (err) {
    throw new ApiError(0, `server unreachable (${err.message})`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (res.status === 401) unauthorized();
  if (!res.ok) throw new ApiError(res.status, data && data.error
    ? data.error + (data.detail ? `: ${data.detail}` : "") : `HTTP ${res.status}`);
  return {data, status: res.status, next: res.headers.get("X-Next-Cursor")};
}

export async function get(path) {
  return (await request("GET", path)).data;
}

/** A path with a query built from an object; empty values are left out. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export function sseUrl(path, params = {}) {
  return withQuery(path, {...params, api_key: getKey() || null});
}

/** The activity feed: one EventSource for the whole app. The browser resumes it with Last-Event-ID after a
 * dropped connection; when it gives up (an HTTP error), we reconnect from the last id with a growing delay.
 * onOpen runs on every (re)connection: what changed while no feed was open is only in a fresh fetch. */
export class ActivityFeed {
  constructor({onOpen, onMessage, onTick, onStatus}) {
    this.handlers = {onOpen, onMessage, onTick, onStatus};
    this.lastId = null;
    this.source = null;
    this.retryMs = 1000;
    this.timer = null;
  }

  start() {
    this.stop();
    const source = new EventSource(sseUrl("/api/activity", {after: this.lastId}));
    this.source = source;
    this.handlers.onStatus("connecting");
    source.onopen = () => {
      this.retryMs = 1000;
      this.handlers.onStatus("live");
      this.handlers.onOpen();
    };
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) {
        this.handlers.onStatus("connecting");
        return;
      }
      this.handlers.onStatus("offline");
      get("/workers").catch(() => {});  // a 401 here shows the key form (and stops this feed)
      this.timer = setTimeout(() => this.start(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 30_000);
    };
    for (const kind of ["task", "event", "incident", "fix_run", "regression_run"]) {
      source.addEventListener(kind, (e) => {
        this.lastId = e.lastEventId || this.lastId;
        let data;
        try {
          data = JSON.parse(e.data);
        } catch {
          return;
        }
        this.handlers.onMessage(kind, data);
      });
    }
    source.addEventListener("tick", () => this.handlers.onTick());
  }

  stop() {
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
  }
}
