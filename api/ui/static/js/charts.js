// Two small inline-SVG charts over per-minute buckets (GET /api/stats/tasks): stacked bars and a gapped line.
// The SVG scales to its box (viewBox); labels are HTML around it so they keep their size.

import {h, svg} from "./dom.js";

const W = 300;  // viewBox width: one unit per 5 s of an hour
const H = 80;  // viewBox height
const PAD = 3;  // viewBox units kept clear around the line chart's points

function frame(title, summary, plot, axis) {
  return h("figure", {class: "chart"},
    h("figcaption", {}, h("span", {class: "chart-title"}, title), h("span", {class: "chart-summary"}, summary)),
    h("div", {class: "plot"}, h("span", {class: "y-max"}, axis), plot),
    h("div", {class: "x-axis"}, h("span", {}, "-60 min"), h("span", {}, "now")));
}

function minuteLabel(bucket) {
  return new Date(bucket.minute).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

/** Finished tasks per minute: completed and failed stacked. */
export function throughputChart(buckets) {
  const n = Math.max(buckets.length, 1);
  const max = Math.max(1, ...buckets.map((b) => b.completed + b.failed));
  const slot = W / n;
  const bars = buckets.flatMap((b, i) => {
    const x = i * slot + slot * 0.1;
    const width = slot * 0.8;
    const ok = (b.completed / max) * H;
    const bad = (b.failed / max) * H;
    const tip = `${minuteLabel(b)}: ${b.created} created, ${b.completed} completed, ${b.failed} failed`;
    return [
      svg("rect", {x, y: H - ok, width, height: ok, class: "bar ok"}, svg("title", {}, tip)),
      svg("rect", {x, y: H - ok - bad, width, height: bad, class: "bar bad"}, svg("title", {}, tip)),
    ];
  });
  const sum = (k) => buckets.reduce((acc, b) => acc + b[k], 0);
  const plot = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "Tasks per minute over the last hour"},
  svg("line", {x1: 0, y1: H, x2: W, y2: H, class: "axis"}), bars);
  return frame("Tasks / min", `${sum("created")} created · ${sum("completed")} completed · ${sum("failed")} failed`,
    plot, `${max}`);
}

/** The share of finished tasks that failed, per minute; minutes with nothing finished are gaps. */
export function failureChart(buckets) {
  const n = Math.max(buckets.length - 1, 1);
  const segments = [];
  let current = [];
  buckets.forEach((b, i) => {
    const done = b.completed + b.failed;
    if (!done) {
      if (current.length) segments.push(current);
      current = [];
      return;
    }
    current.push({x: PAD + (i / n) * (W - 2 * PAD), y: H - PAD - (b.failed / done) * (H - 2 * PAD), tip: `${minuteLabel(b)}: ${b.failed} of ${done} failed`});
  });
  if (current.length) segments.push(current);
  const shapes = segments.flatMap((points) => [
    points.length > 1 ? svg("polyline", {points: points.map((p) => `${p.x},${p.y}`).join(" "), class: "line"}) : null,
    points.map((p) => svg("circle", {cx: p.x, cy: p.y, r: 2, class: "dot"}, svg("title", {}, p.tip))),
  ]);
  const failed = buckets.reduce((acc, b) => acc + b.failed, 0);
  const done = buckets.reduce((acc, b) => acc + b.completed + b.failed, 0);
  const rate = done ? `${((failed / done) * 100).toFixed(1)} % failed (${failed} of ${done})` : "nothing finished";
  const plot = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "Failure rate per minute over the last hour"},
  svg("line", {x1: 0, y1: H, x2: W, y2: H, class: "axis"}),
  svg("line", {x1: 0, y1: PAD, x2: W, y2: PAD, class: "grid"}),
  svg("line", {x1: 0, y1: H / 2, x2: W, y2: H / 2, class: "grid"}), shapes);
  return frame("Failure rate", rate, plot, "100 %");
}
