// The console's list and response pages: the list's first page refreshes itself, and a running
// response's page reloads until it ends.  No framework, nothing fetched from elsewhere.
"use strict";

const RUNNING = new Set(["in_progress", "queued"]);

function refreshList(table) {
  const url = table.dataset.refresh;
  const rows = document.getElementById("rows");
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const reply = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (reply.ok) rows.innerHTML = await reply.text();
    } catch (_) { /* the server is away for a moment: try again at the next tick */ }
  }, 2000);
}

function followResponse(page) {
  const id = page.dataset.id;
  const timer = setInterval(async () => {
    try {
      const reply = await fetch(`/console/api/statuses?ids=${encodeURIComponent(id)}`, { credentials: "same-origin" });
      if (!reply.ok) return;
      const status = (await reply.json())[id];
      if (status && status !== page.dataset.status) { clearInterval(timer); location.reload(); }
    } catch (_) { /* try again */ }
  }, 1500);
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("responses");
  if (table && table.dataset.refresh) refreshList(table);
  const page = document.getElementById("response");
  if (page && RUNNING.has(page.dataset.status)) followResponse(page);
});
