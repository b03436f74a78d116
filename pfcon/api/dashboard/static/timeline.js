// The execution timeline: one SVG bar per job (queued, then running), coloured by outcome.
// The range comes from the buttons, the from/to fields, zoom and pan, or a drag across the
// chart; a range that ends "now" follows live.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const svg = document.getElementById("timeline");
  const status = document.getElementById("timeline-status");
  const download = document.getElementById("download");
  const form = document.getElementById("range");
  const LABEL = 170, ROW = 20, AXIS = 28, PAD = 12;
  const OUTCOME = { finishedSuccessfully: "ok", finishedWithError: "failed", undefined: "undefined" };
  let span = 86400, until = null;  // until null: the range ends now and follows live
  let drawn = null;  // {since, until, left, width} of the current drawing, for drags
  let last = null;  // the data drawn last, for "fit"
  let fitted = false;  // the first load looks back a day, then fits the range to its jobs

  const node = (tag, attrs = {}, text) => {
    const el = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const range = () => {
    const end = until === null ? Date.now() / 1000 : until;
    return [end - span, end];
  };
  const toInput = (t) => new Date(t * 1000).toISOString().slice(0, 19);
  const fromInput = (value) => Date.parse(value + "Z") / 1000;

  function ticks(since, end, width) {
    const steps = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400];
    const step = steps.find((s) => ((end - since) / s) * 90 <= width) || steps[steps.length - 1];
    const out = [];
    for (let t = Math.ceil(since / step) * step; t <= end; t += step) out.push(t);
    return { out, step };
  }
  const tickLabel = (t, step) => {
    const iso = new Date(t * 1000).toISOString();
    return step >= 86400 ? iso.slice(5, 10) : step >= 60 ? iso.slice(11, 16) : iso.slice(11, 19);
  };

  function draw(data) {
    const width = Math.max(svg.clientWidth || 800, 400);
    const left = LABEL, plot = width - LABEL - PAD;
    const x = (t) => left + ((Math.min(Math.max(t, data.since), data.until) - data.since) / (data.until - data.since)) * plot;
    const height = AXIS + Math.max(data.jobs.length, 1) * ROW + PAD;
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const parts = [];
    const { out, step } = ticks(data.since, data.until, plot);
    for (const t of out) {
      parts.push(node("line", { x1: x(t), x2: x(t), y1: AXIS - 6, y2: height - PAD, class: "grid" }));
      parts.push(node("text", { x: x(t), y: AXIS - 10, class: "tick", "text-anchor": "middle" }, tickLabel(t, step)));
    }
    data.jobs.forEach((job, i) => {
      const y = AXIS + i * ROW;
      const start = job.jobStart === null ? null : job.jobStart / 1000;
      const end = job.jobEnd === null ? data.now : job.jobEnd / 1000;
      const queuedEnd = start === null ? end : start;
      const outcome = OUTCOME[job.status] || (start === null ? "queued" : "running");
      const link = node("a", { href: "/dashboard/jobs/" + encodeURIComponent(job.jobId), class: "bar", "data-jid": job.jobId });
      const waited = (queuedEnd - job.queueStart / 1000).toFixed(1);
      const ran = start === null ? "not started" : "ran " + (end - start).toFixed(1) + " s";
      link.append(node("title", {}, `${job.jobId} (${job.name}): ${job.status}; waited ${waited} s, ${ran}`));
      link.append(node("text", { x: 4, y: y + 14, class: "label" }, job.jobId.length > 24 ? job.jobId.slice(0, 23) + "…" : job.jobId));
      const qx = x(job.queueStart / 1000);
      link.append(node("rect", { x: qx, y: y + 3, width: Math.max(x(queuedEnd) - qx, 1), height: ROW - 6, class: "queued" }));
      if (start === null && OUTCOME[job.status]) {  // ended without running (a failed start): its outcome at the end
        link.append(node("rect", { x: x(queuedEnd) - 3, y: y + 3, width: 3, height: ROW - 6, class: OUTCOME[job.status] }));
      }
      if (start !== null) {
        const rx = x(start);
        link.append(node("rect", { x: rx, y: y + 3, width: Math.max(x(end) - rx, 2), height: ROW - 6, class: outcome }));
      }
      parts.push(link);
    });
    if (!data.jobs.length) parts.push(node("text", { x: left, y: AXIS + 14, class: "tick" }, "No jobs in this range."));
    parts.push(node("rect", { id: "selection", x: 0, y: AXIS - 6, width: 0, height: height - AXIS, class: "selection" }));
    svg.replaceChildren(...parts);
    drawn = { since: data.since, until: data.until, left, width: plot };
    const shown = data.jobs.length >= data.limit ? `the newest ${data.limit}` : String(data.jobs.length);
    status.textContent = `${shown} jobs from ${toInput(data.since)} to ${toInput(data.until)} UTC · updated ${pfcon.clock()}`;
  }

  async function load() {
    const [since, end] = range();
    const query = `?since=${since.toFixed(3)}&until=${end.toFixed(3)}`;
    download.href = download.getAttribute("href").split("?")[0] + query;
    document.getElementById("from").value = toInput(since);
    document.getElementById("to").value = toInput(end);
    try {
      last = await pfcon.json(svg.dataset.src + query);
    } catch (error) {
      status.textContent = "Could not load the timeline: " + error.message;
      return;
    }
    if (!fitted) {
      fitted = true;
      if (fit()) return;
    }
    draw(last);
  }

  function fit() {
    // the range from just before the first job's acceptance to the last one's end (or now)
    if (!last || !last.jobs.length) return false;
    const first = Math.min(...last.jobs.map((job) => job.queueStart / 1000));
    const ends = last.jobs.map((job) => (job.jobEnd === null ? last.now : job.jobEnd / 1000));
    const end = Math.max(...ends);
    const margin = Math.max((end - first) * 0.05, 1);
    span = end - first + 2 * margin;
    until = end + margin >= Date.now() / 1000 - 5 ? null : end + margin;
    load();
    return true;
  }

  form.querySelectorAll("[data-span]").forEach((button) => button.addEventListener("click", () => {
    span = Number(button.dataset.span);
    until = null;
    load();
  }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const since = fromInput(document.getElementById("from").value);
    const end = fromInput(document.getElementById("to").value);
    if (!(since < end)) {
      status.textContent = "The start of the range must be before its end.";
      return;
    }
    span = end - since;
    until = end;
    load();
  });
  const zoom = (factor) => {
    const [since, end] = range();
    const middle = (since + end) / 2;
    span = Math.max(span * factor, 1);
    until = until === null && factor < 1 ? null : middle + span / 2;
    if (until !== null && until > Date.now() / 1000) until = null;
    load();
  };
  const pan = (direction) => {
    const [, end] = range();
    until = end + (direction * span) / 2;
    if (until >= Date.now() / 1000) until = null;
    load();
  };
  document.getElementById("fit").addEventListener("click", fit);
  document.getElementById("zoom-in").addEventListener("click", () => zoom(0.5));
  document.getElementById("zoom-out").addEventListener("click", () => zoom(2));
  document.getElementById("pan-left").addEventListener("click", () => pan(-1));
  document.getElementById("pan-right").addEventListener("click", () => pan(1));

  // drag to zoom
  let dragFrom = null;
  const timeAt = (event) => {
    const box = svg.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * (drawn.left + drawn.width + PAD);
    const clamped = Math.min(Math.max(px, drawn.left), drawn.left + drawn.width);
    return { px: clamped, t: drawn.since + ((clamped - drawn.left) / drawn.width) * (drawn.until - drawn.since) };
  };
  svg.addEventListener("mousedown", (event) => {
    if (!drawn || event.button !== 0) return;
    dragFrom = timeAt(event);
    event.preventDefault();
  });
  svg.addEventListener("mousemove", (event) => {
    if (!dragFrom) return;
    const to = timeAt(event);
    const selection = document.getElementById("selection");
    selection.setAttribute("x", String(Math.min(dragFrom.px, to.px)));
    selection.setAttribute("width", String(Math.abs(to.px - dragFrom.px)));
  });
  window.addEventListener("mouseup", (event) => {
    if (!dragFrom) return;
    const to = timeAt(event);
    const [a, b] = [dragFrom.t, to.t].sort((p, q) => p - q);
    const moved = Math.abs(to.px - dragFrom.px);
    dragFrom = null;
    document.getElementById("selection").setAttribute("width", "0");
    if (moved < 5 || b - a < 0.5) return;  // a click (on a bar: its link), not a drag
    span = b - a;
    until = b;
    load();
  });

  load();
  setInterval(() => { if (until === null && !dragFrom) load(); }, 5000);
})();
