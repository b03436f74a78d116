// A job's page follows it while it runs: status, events and (once opened) its log tail.
"use strict";

(() => {
  const article = document.getElementById("job");
  const logs = document.getElementById("logs");
  const logText = document.getElementById("logs-text");
  const logStatus = document.getElementById("logs-status");
  let terminal = article.dataset.terminal === "true";
  let logTimer = null;

  async function refreshJob() {
    const data = await pfcon.json(article.dataset.src);
    const job = data.job;
    document.getElementById("job-status").replaceChildren(pfcon.badge(job.status));
    document.getElementById("job-message").textContent = job.message;
    document.getElementById("job-waited").textContent = pfcon.duration(job.waited);
    document.getElementById("job-ran").textContent = pfcon.duration(job.ran);
    document.getElementById("events").replaceChildren(...data.events.map((event) =>
      pfcon.el("li", {}, pfcon.el("time", { datetime: event.when + "Z" }, event.when), " ",
               pfcon.badge(event.label), " ", pfcon.el("span", {}, event.message))));
    terminal = job.terminal || Boolean(job.deleted);
  }

  async function refreshLogs() {
    try {
      const data = await pfcon.json(article.dataset.logs);
      const atBottom = logText.scrollTop + logText.clientHeight >= logText.scrollHeight - 4;
      logText.textContent = data.logs || "(no output yet)";
      if (atBottom) logText.scrollTop = logText.scrollHeight;
      const following = !terminal && data.status && !["finishedSuccessfully", "finishedWithError", "undefined"].includes(data.status);
      logStatus.textContent = (following ? "Following the log live · " : "Final log · ") + "updated " + pfcon.clock();
      if (!following) stopLogs();
    } catch (error) {
      logStatus.textContent = "Could not read the log: " + error.message;
    }
  }

  function stopLogs() {
    clearInterval(logTimer);
    logTimer = null;
  }

  logs.addEventListener("toggle", () => {
    if (logs.open) {
      refreshLogs();
      if (!terminal) logTimer = setInterval(refreshLogs, 2000);
    } else {
      stopLogs();
    }
  });

  const jobTimer = setInterval(async () => {
    try {
      await refreshJob();
    } catch (error) {
      return;
    }
    if (terminal) clearInterval(jobTimer);
  }, 2000);
})();
