// redcount's dashboard. Two pages: the jobs in a Redis (/) and one job (/jobs/NAME). Both follow
// `GET /events` (server-sent events, one message per reader tick): nothing here polls. Charts are
// plain SVG drawn below; every value is set with textContent, never parsed as HTML.
"use strict";

const main = document.getElementById("main");
const jobName = decodeURIComponent((location.pathname.match(/^\/jobs\/([^/]+)/) || [])[1] || "");

function el(tag, attrs, ...children) {
  const e = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function ms(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1000) return n + " ms";
  if (n < 120000) return (n / 1000).toFixed(1) + " s";
  return (n / 60000).toFixed(1) + " min";
}
function num(n) { return Number(n).toLocaleString("en-US"); }
function phase(p) { return el("span", { class: "phase " + p, "data-phase": p }, p); }
function bar(fraction, big) {
  return el("div", { class: big ? "bar big" : "bar" },
    el("div", { style: `width:${(100 * Math.min(1, fraction)).toFixed(1)}%` }));
}

// A chart of series over time, with the job's events as vertical markers. series: [{points:[[x,y]],
// color, dots}], x in ms of the coordinator's clock.
function chart(title, series, events, opts) {
  const W = 560, H = 220, L = 56, R = 10, T = 22, B = 24;
  const svg = el("svg:svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, "data-chart": title });
  const all = series.flatMap(s => s.points);
  const x0 = opts.x0, x1 = Math.max(opts.x1, x0 + 1000);
  const ymax = Math.max(1, ...all.map(p => p[1])) * 1.1;
  const sx = x => L + (W - L - R) * (x - x0) / (x1 - x0);
  const sy = y => H - B - (H - T - B) * y / ymax;
  svg.append(el("svg:text", { x: L, y: 14 }, title));
  for (const f of [0, 0.5, 1]) {
    svg.append(el("svg:line", { x1: L, x2: W - R, y1: sy(ymax * f / 1.1), y2: sy(ymax * f / 1.1), stroke: "#eee" }));
    svg.append(el("svg:text", { x: L - 4, y: sy(ymax * f / 1.1) + 4, "text-anchor": "end" }, opts.fmt(ymax * f / 1.1)));
  }
  svg.append(el("svg:text", { x: L, y: H - 6 }, "0 s"));
  svg.append(el("svg:text", { x: W - R, y: H - 6, "text-anchor": "end" }, ((x1 - x0) / 1000).toFixed(0) + " s"));
  for (const s of series) {
    if (s.dots) {
      for (const [x, y, hot] of s.points) {
        svg.append(el("svg:circle", { cx: sx(x), cy: sy(y), r: 1.8, fill: hot ? "#dc2626" : s.color }));
      }
    } else if (s.points.length) {
      const d = s.points.map(([x, y], i) => (i ? "L" : "M") + sx(x).toFixed(1) + "," + sy(y).toFixed(1)).join("");
      svg.append(el("svg:path", { d, fill: "none", stroke: s.color, "stroke-width": 1.6 }));
    }
  }
  for (const e of events) {
    if (e.at_ms < x0 || e.at_ms > x1) continue;
    const x = sx(e.at_ms);
    const marker = el("svg:line", { class: "event-marker", "data-kind": e.kind, x1: x, x2: x, y1: T, y2: H - B });
    marker.append(el("svg:title", {}, `${e.kind}: ${e.detail}`));
    svg.append(marker, el("svg:text", { class: "event-label", x: x + 3, y: T + 10 }, e.kind));
  }
  return svg;
}

function jobsPage(o) {
  const rows = o.jobs.map(j => el("tr", { "data-job": j.name },
    el("td", {}, el("a", { href: "/jobs/" + encodeURIComponent(j.name) }, j.name)),
    el("td", {}, phase(j.phase)),
    el("td", {}, j.stream ? "stream" : "batch"),
    el("td", {}, bar(j.progress)),
    el("td", { class: "num" }, `${num(j.done)}/${num(j.tasks)}`),
    el("td", { class: "num" }, j.failed ? num(j.failed) : ""),
    el("td", { class: "num" }, bytes(j.done_bytes)),
    el("td", { class: "num" }, j.bytes_per_second ? bytes(j.bytes_per_second) + "/s" : ""),
    el("td", { class: "num" }, ms(j.age_ms))));
  return [
    el("h1", {}, "Jobs"),
    o.jobs.length ? el("table", { id: "jobs" },
      el("tr", {}, ["job", "state", "kind", "progress", "tasks", "failed", "bytes", "rate", "age"]
        .map((h, i) => el("th", { class: i > 3 ? "num" : "" }, h))),
      rows) : el("p", { class: "muted" }, "No redcount jobs in this Redis yet."),
    el("h2", {}, "Workers"),
    o.workers.length ? el("table", { id: "all-workers" },
      el("tr", {}, ["worker", "job", "state", "up", "tasks", "bytes", "words", "failed", "last heard"]
        .map((h, i) => el("th", { class: i > 2 ? "num" : "" }, h))),
      o.workers.map(w => el("tr", { "data-worker": w.worker },
        el("td", {}, w.worker),
        el("td", {}, el("a", { href: "/jobs/" + encodeURIComponent(w.job) }, w.job)),
        el("td", {}, el("span", { class: "phase " + (w.state === "live" ? "running" : w.state === "silent" ? "failed" : "finished") }, w.state)),
        el("td", { class: "num" }, w.first_ms ? ms(Math.max(w.heard_ms, w.last_ms) - w.first_ms) : "–"),
        el("td", { class: "num" }, num(w.tasks)),
        el("td", { class: "num" }, bytes(w.bytes)),
        el("td", { class: "num" }, num(w.words)),
        el("td", { class: "num" }, w.failed ? num(w.failed) : ""),
        el("td", { class: "num" }, w.heard_ms ? ms(w.heard_ago_ms) + " ago" : "–"))))
      : el("p", { class: "muted" }, "No worker has been heard from."),
  ];
}

// A held task as the files it reads: the first one's name (its path and the task id on hover)
// and how many more are packed with it.
function held(h, i) {
  const name = h.input ? h.input.split("/").pop() : "task " + h.task;
  const more = h.files > 1 ? ` +${num(h.files - 1)} files` : "";
  const note = ` (${ms(Math.max(0, h.lease_left_ms))}${h.attempts > 1 ? ", attempt " + h.attempts : ""})`;
  return el("span", { class: "hold", title: `${h.input || ""} · task ${h.task}` }, (i ? ", " : "") + name + more + note);
}

function stat(label, value, id) {
  return el("div", { class: "stat" }, el("b", { id }, value), el("span", {}, label));
}

function jobPage(d) {
  const s = d.status, j = d.summary;
  const x0 = s.created_ms, x1 = s.finished_ms || s.now_ms;
  const rate = d.throughput.map(p => [p.at_ms + 500, p.bytes]);
  const lat = d.latency;
  const latencyRow = (name, p) => el("tr", {}, el("td", {}, name),
    ...[p.p50, p.p90, p.p99, p.max].map(v => el("td", { class: "num" }, ms(v))));
  const now = s.now_ms;
  return [
    el("h1", {}, j.name, " ", phase(j.phase), " ", el("span", { class: "muted" }, j.stream ? "stream" : "batch")),
    bar(j.progress, true),
    el("div", { class: "grid" },
      stat("tasks done", num(s.done), "tasks-done"),
      stat("tasks in all", num(s.tasks), "tasks-total"),
      stat("in flight", num(s.in_flight)),
      stat("waiting", num(d.waiting)),
      stat("oldest waiting", d.oldest_waiting_ms === null ? "–" : ms(d.oldest_waiting_ms), "oldest-waiting"),
      stat("failed", num(s.dead), "tasks-failed"),
      stat("bytes", `${bytes(s.done_bytes)} / ${bytes(s.bytes)}`),
      stat("words", num(s.words)),
      stat("distinct words", num(s.distinct_words)),
      stat("recomputed", num(s.recomputed)),
      stat("re-delivered", num(s.redelivered)),
      stat("duplicate commits", num(s.duplicates)),
      stat("live workers", num(s.live_workers)),
      stat("elapsed", ms(x1 - x0))),
    el("div", { class: "two" },
      el("div", {}, el("h2", {}, "Throughput"),
        chart("input bytes committed per second", [{ points: rate, color: "#3b82f6" }], d.events,
          { x0, x1, fmt: v => bytes(v) + "/s" })),
      el("div", {}, el("h2", {}, j.stream ? "Latency (due → committed)" : "Task latency (enqueued → committed)"),
        // A stream's files by when each was due; a batch job's tasks, all enqueued at its start,
        // by when each was committed (by due time they would all stand at x = 0).
        chart((j.stream ? "per file by due time, most recent " : "per task by commit time, most recent ")
          + lat.files.length + " (red: re-delivered)",
          [{ points: lat.files.map(f => [j.stream ? f.due_ms : f.due_ms + f.latency_ms, f.latency_ms, f.attempts > 1]),
             color: "#6366f1", dots: true }],
          d.events, { x0, x1, fmt: ms }))),
    el("div", { class: "two" },
      el("div", {}, el("h2", {}, "Top words"),
        el("table", { id: "top" }, el("tr", {}, el("th", {}, "word"), el("th", { class: "num" }, "count")),
          d.top.map(([w, n]) => el("tr", {}, el("td", { class: "word" }, w), el("td", { class: "num" }, num(n)))))),
      el("div", {}, el("h2", {}, "Latency percentiles"),
        el("table", { id: "latency" },
          el("tr", {}, el("th", {}, ""), ...["p50", "p90", "p99", "max"].map(h => el("th", { class: "num" }, h))),
          latencyRow("total (due → committed)", lat.total),
          latencyRow("wait (due → claimed)", lat.wait),
          latencyRow("run (claimed → committed)", lat.run)))),
    el("h2", {}, "Workers"),
    d.workers.length ? el("table", { id: "workers" },
      el("tr", {}, el("th", {}, "worker"), el("th", { class: "num" }, "last heard"), el("th", {}, "counting (lease left)")),
      d.workers.map(w => el("tr", {}, el("td", {}, w.name), el("td", { class: "num" }, ms(Math.max(0, now - w.heard_ms)) + " ago"),
        el("td", {}, w.holds.length ? w.holds.map(held) : "–"))))
      : el("p", { class: "muted" }, "No worker has been heard from."),
    el("h2", {}, "Events"),
    d.events.length ? el("table", { id: "events" },
      el("tr", {}, el("th", { class: "num" }, "at"), el("th", {}, "event"), el("th", {}, "detail")),
      d.events.map(e => el("tr", { "data-kind": e.kind }, el("td", { class: "num" }, ms(Math.max(0, e.at_ms - x0))),
        el("td", {}, e.kind), el("td", {}, e.detail))))
      : el("p", { class: "muted" }, "None."),
    el("h2", {}, "Failed inputs"),
    d.failed.length ? el("table", { id: "failed" },
      el("tr", {}, el("th", {}, "input"), el("th", { class: "num" }, "bytes"), el("th", { class: "num" }, "attempts"), el("th", {}, "error")),
      d.failed.map(f => el("tr", {}, el("td", {}, f.path), el("td", { class: "num" }, `${f.start}–${f.end}`),
        el("td", { class: "num" }, f.attempts), el("td", {}, f.error))))
      : el("p", { class: "muted" }, "None."),
    d.retry_command ? el("p", { class: "muted" }, "To count them again once fixed: ",
      el("code", {}, d.retry_command)) : null,
  ];
}

function render(nodes) {
  main.replaceChildren(...nodes.flat().filter(n => n));
}

function follow() {
  const link = document.getElementById("link");
  const source = new EventSource(jobName ? "/events?job=" + encodeURIComponent(jobName) : "/events");
  source.onopen = () => { link.textContent = "live"; link.className = "link"; };
  source.onerror = () => { link.textContent = "disconnected, retrying…"; link.className = "link down"; };
  source.addEventListener("overview", e => {
    const o = JSON.parse(e.data);
    document.getElementById("redis").textContent = o.redis;
    render([o.error ? el("div", { class: "error" }, "Redis: " + o.error) : null, jobsPage(o)]);
  });
  source.addEventListener("job", e => {
    const d = JSON.parse(e.data);
    document.title = `${d.summary.name} (${d.summary.phase}) · redcount`;
    render(jobPage(d));
  });
  source.addEventListener("missing", () => {
    render([el("p", { class: "muted" }, `No job '${jobName}' in this Redis (yet).`), el("a", { href: "/" }, "All jobs")]);
  });
}

// The page arrives with the state of its moment (server.rs, `page`): shown at once, then kept
// live by the events.
function first() {
  const initial = document.getElementById("initial");
  if (!initial) return;
  const { kind, data } = JSON.parse(initial.textContent);
  if (kind === "overview") {
    document.getElementById("redis").textContent = data.redis;
    render([data.error ? el("div", { class: "error" }, "Redis: " + data.error) : null, jobsPage(data)]);
  } else if (kind === "job") {
    document.title = `${data.summary.name} (${data.summary.phase}) · redcount`;
    render(jobPage(data));
  }
}

first();
follow();
