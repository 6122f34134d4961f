// The runs page: refresh the progress of queued and running runs in place, once a second.
(function () {
  "use strict";
  const T = window.Trainyard;
  const table = document.getElementById("runs-table");
  const api = table.dataset.api;

  function activeRows() {
    return Array.from(table.querySelectorAll("tr[data-run-id]")).filter((row) =>
      T.ACTIVE.includes(row.dataset.status),
    );
  }

  function update(row, run) {
    row.dataset.status = run.status;
    T.setStatus(row.querySelector("[data-field=status]"), run.status);
    T.renderProgress(row.querySelector("[data-progress]"), run);
    row.querySelector("[data-field=test_accuracy]").textContent = T.f4(run.test_accuracy);
    row.querySelector("[data-field=test_loss]").textContent = T.f4(run.test_loss);
    row.querySelector("[data-field=duration]").textContent = T.seconds(run.duration_seconds);
  }

  async function tick() {
    const rows = activeRows();
    if (!rows.length) return false;
    // The oldest 200 unfinished runs in one request, each queued one with its place in the queue.
    const active = (await T.getJSON(api + "?status=queued,running&sort=id&limit=200")).runs;
    const byId = new Map(active.map((r) => [r.id, r]));
    for (const row of rows) {
      const id = Number(row.dataset.runId);
      // A run missing from the list has finished (or is far back in a long queue).
      update(row, byId.get(id) || (await T.getJSON(api + "/" + id)));
    }
    return true;
  }

  T.poll(tick, 1000);
})();
