// DOM building without innerHTML: every value lands in a text node or an attribute, so server data (task
// prompts and results are attacker-controlled) can never become markup. Plus formatting and rate helpers.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    } else if (name === "class") {
      el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h("a", {href: "#/", class: "x", on: {click: fn}}, "text", node, [more]) */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A token safe to use in a class name (states and classes come from the server). */
export function token(value) {
  return String(value ?? "none").toLowerCase().replace(/[^a-z0-9_-]/g, "_");
}

export function badge(state, extra) {
  return h("span", {class: ["badge", `st-${token(state)}`, extra]}, state ?? "—");
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "—";
}

export function link(kind, id, text) {
  return h("a", {href: `#/${kind}/${encodeURIComponent(id)}`, class: "mono"}, text ?? shortId(id));
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}

export function time(iso) {
  return h("time", {datetime: iso || null, title: iso || null}, fmtTime(iso));
}

export function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function between(from, to) {
  if (!from || !to) return null;
  return new Date(to).getTime() - new Date(from).getTime();
}

export function fmtUsd(usd) {
  if (usd === null || usd === undefined) return "—";
  return usd === 0 ? "$0" : `$${Number(usd).toFixed(usd < 0.01 ? 6 : 4)}`;
}

export function fmtNum(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString();
}

export function truncate(text, n) {
  const s = String(text ?? "");
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

/** A definition list from [label, value] pairs; values may be nodes. Pairs with a null value are left out. */
export function facts(pairs) {
  return h("dl", {class: "facts"}, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function section(title, ...children) {
  return h("section", {class: "card"}, h("h2", {}, title), ...children);
}

export function notice(text, kind = "muted") {
  return h("p", {class: kind}, text);
}

/** A unified diff as lines coloured by their first character. */
export function diffView(text) {
  return h("pre", {class: "diff"}, String(text || "").split("\n").map((line) => h("span", {
    class: line.startsWith("+") && !line.startsWith("+++") ? "add"
      : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : null,
  }, line, "\n")));
}

/** Runs fn at most once per `ms` (the first call at once, later ones folded into one trailing call). */
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  const run = () => { timer = null; last = Date.now(); fn(); };
  const call = () => {
    if (timer) return;
    const wait = last + ms - Date.now();
    if (wait <= 0) run(); else timer = setTimeout(run, wait);
  };
  call.cancel = () => { clearTimeout(timer); timer = null; };
  return call;
}

/** Collects keys and hands them to fn(keys) at most once per `ms`: a burst of changes is one refresh. */
export function coalesce(fn, ms) {
  let keys = new Set();
  const flush = throttle(() => { const batch = keys; keys = new Set(); fn(batch); }, ms);
  const add = (key) => { keys.add(key); flush(); };
  add.cancel = flush.cancel;
  return add;
}
