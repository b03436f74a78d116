// The job list refreshes itself every few seconds (same filters and page) until paused.
"use strict";

(() => {
  const table = document.getElementById("jobs");
  const body = table.querySelector("tbody");
  const toggle = document.getElementById("live-toggle");
  const status = document.getElementById("live-status");
  let live = true;

  function row(job) {
    const link = pfcon.el("a", { href: "/dashboard/jobs/" + encodeURIComponent(job.jid) }, job.jid);
    const cells = [pfcon.badge(job.status), link, job.auid, job.image, job.accepted,
                   pfcon.duration(job.waited), pfcon.duration(job.ran)];
    const tr = pfcon.el("tr", { "data-jid": job.jid });
    cells.forEach((cell, i) => tr.append(pfcon.el("td", i === 3 ? { class: "image" } : {}, cell)));
    return tr;
  }

  async function refresh() {
    if (!live) return;
    try {
      const data = await pfcon.json(table.dataset.src + window.location.search);
      const rows = data.items.map(row);
      if (!rows.length) rows.push(pfcon.el("tr", { class: "empty" }, pfcon.el("td", { colspan: "7" }, "No jobs match.")));
      body.replaceChildren(...rows);
      status.textContent = "Updated " + pfcon.clock();
    } catch (error) {
      status.textContent = "Could not refresh: " + error.message;
    }
  }

  toggle.addEventListener("click", () => {
    live = !live;
    toggle.setAttribute("aria-pressed", String(live));
    toggle.textContent = live ? "Pause live updates" : "Resume live updates";
    if (live) refresh();
  });

  const capacity = document.getElementById("capacity");
  function gauge(id, used, total, text) {
    const meter = document.getElementById(id);
    meter.max = Math.max(total, 0.0001);
    meter.value = Math.max(0, used);
    document.getElementById(id + "-text").textContent = text;
  }
  async function refreshCapacity() {
    try {
      const cap = await pfcon.json(capacity.dataset.src);
      const note = document.getElementById("capacity-note");
      const gauges = capacity.querySelector(".gauges");
      if (!cap.local) {
        note.textContent = "The " + cap.engine + " engine keeps its own account of capacity (or has not answered yet).";
        gauges.hidden = true;
        return;
      }
      note.textContent = "";
      gauges.hidden = false;
      const gib = (bytes) => (bytes / 2 ** 30).toFixed(1);
      const usedCpu = cap.total_cpus - cap.free_cpus;
      gauge("cap-cpu", usedCpu, cap.total_cpus, usedCpu.toFixed(2) + " of " + cap.total_cpus + " asked by running jobs");
      const usedMem = cap.total_memory_bytes - cap.free_memory_bytes;
      gauge("cap-mem", usedMem, cap.total_memory_bytes, gib(usedMem) + " of " + gib(cap.total_memory_bytes) + " GiB");
      gauge("cap-gpu", cap.total_gpus - cap.free_gpus, cap.total_gpus, (cap.total_gpus - cap.free_gpus) + " of " + cap.total_gpus);
      document.getElementById("cap-queue").textContent = cap.queue_length + " waiting to start";
    } catch (error) {
      document.getElementById("capacity-note").textContent = "Could not read capacity: " + error.message;
    }
  }

  refreshCapacity();
  setInterval(refresh, 3000);
  setInterval(refreshCapacity, 5000);
})();
