// The dashboard shell: the key form, hash routing (#/tasks, #/task/<id>...) and the one activity feed that
// every page listens to. Pages are modules with mount(root, params) -> {refresh, onActivity, onTick, destroy}:
// refresh runs when the feed (re)connects, since what changed before it was open arrives only by fetching.

import {ActivityFeed, get, getKey, onUnauthorized, setKey} from "./api.js";
import {h, replace} from "./dom.js";
import * as event from "./pages/event.js";
import * as events from "./pages/events.js";
import * as incident from "./pages/incident.js";
import * as incidents from "./pages/incidents.js";
import * as overview from "./pages/overview.js";
import * as task from "./pages/task.js";
import * as tasks from "./pages/tasks.js";

const ROUTES = [
  [/^\/?$/, overview, "overview"],
  [/^\/tasks$/, tasks, "tasks"],
  [/^\/task\/([^/]+)$/, task, "tasks"],
  [/^\/events$/, events, "events"],
  [/^\/event\/([^/]+)$/, event, "events"],
  [/^\/incidents$/, incidents, "incidents"],
  [/^\/incident\/([^/]+)$/, incident, "incidents"],
];

const $ = (id) => document.getElementById(id);
const view = $("view");
let page = null;
let running = false;

const feed = new ActivityFeed({
  onOpen: () => page && page.refresh && page.refresh(),
  onMessage: (kind, data) => page && page.onActivity && page.onActivity(kind, data),
  onTick: () => page && page.onTick && page.onTick(),
  onStatus: (status) => {
    const el = $("live");
    el.textContent = status;
    el.className = `live ${status === "live" ? "on" : "off"}`;
    el.dataset.status = status;
  },
});

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const at = raw.indexOf("?");
  return at < 0 ? {path: raw, query: new URLSearchParams()}
    : {path: raw.slice(0, at), query: new URLSearchParams(raw.slice(at + 1))};
}

function route() {
  if (!running) return;
  if (page && page.destroy) page.destroy();
  page = null;
  const {path, query} = parseHash();
  for (const [pattern, module, nav] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    for (const a of $("nav").querySelectorAll("a")) {
      a.classList.toggle("active", a.dataset.page === nav);
    }
    const root = h("div", {class: "page", "data-page": nav});
    replace(view, root);
    let id = null;
    try {
      id = match[1] ? decodeURIComponent(match[1]) : null;
    } catch {
      break;  // a malformed escape in the address: no such page
    }
    page = module.mount(root, {id, query}) || {};
    return;
  }
  replace(view, h("p", {class: "error"}, "No such page. "), h("a", {href: "#/"}, "Back to the overview"));
}

function start() {
  running = true;
  $("login").hidden = true;
  view.hidden = false;
  $("forget").hidden = !getKey();
  feed.start();
  route();
}

function askKey(message) {
  running = false;
  feed.stop();
  if (page && page.destroy) page.destroy();
  page = null;
  replace(view);
  view.hidden = true;
  $("forget").hidden = true;
  $("login").hidden = false;
  const error = $("login-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("api-key").focus();
}

onUnauthorized(() => {
  const had = getKey();
  setKey("");
  askKey(had ? "That key was refused: check it and try again." : null);
});

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("api-key");
  const key = input.value.trim();
  if (!/^[\x21-\x7e]+$/.test(key)) {  // a header cannot carry it: say so instead of "server unreachable"
    askKey("That key holds characters an API key cannot have (spaces, quotes from a word processor?).");
    return;
  }
  setKey(key);
  try {
    await get("/workers");  // a 401 comes back through onUnauthorized with a message
  } catch (err) {
    if (err.status === 401) return;
  }
  input.value = "";
  start();
});

$("forget").addEventListener("click", () => {
  setKey("");
  askKey(null);
});

window.addEventListener("hashchange", route);

(async () => {
  try {
    await get("/workers");  // with no key stored: works when the server has no key; else 401 asks for it
  } catch (err) {
    if (err.status === 401) return;
  }
  start();
})();
