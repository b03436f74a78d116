// Shared by the dashboard's pages: JSON fetches that go back to the login on an expired
// session, durations, status badges, and elements built without innerHTML (no markup
// injection from job names or messages).
"use strict";

const pfcon = {
  async json(url) {
    const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (answer.status === 401) {
      window.location.assign("/dashboard/login?expired=1&next=" + encodeURIComponent(window.location.pathname));
      throw new Error("session expired");
    }
    if (!answer.ok) throw new Error((await answer.json().catch(() => ({}))).message || answer.statusText);
    return answer.json();
  },

  duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.floor(seconds % 60) + " s";
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  },

  el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  },

  badge(status) {
    return pfcon.el("span", { class: "status s-" + status }, status);
  },

  clock() {
    return new Date().toISOString().slice(11, 19) + " UTC";
  },
};
