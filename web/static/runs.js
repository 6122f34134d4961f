// The runs page, live: once a second it asks the API for the page's own query (same filters,
// sort and page). Runs queued elsewhere appear, finished ones move on: when the rows the page
// should show change, it fetches them server-rendered; otherwise it updates their progress.
(function () {
  "use strict";
  const T = window.Trainyard;
  const table = document.getElementById("runs-table");
  const body = document.getElementById("runs-body");
  if (!table.dataset.api) return; // the filters were refused: nothing to follow

  function shown() {
    return Array.from(body.querySelectorAll("tr[data-run-id]"), (row) => Number(row.dataset.runId));
  }

  function update(row, run) {
    row.dataset.status = run.status;
    T.setStatus(row.querySelector("[data-field=status]"), run.status);
    T.renderProgress(row.querySelector("[data-progress]"), run);
    row.querySelector("[data-field=test_accuracy]").textContent = T.f4(run.test_accuracy);
    row.querySelector("[data-field=test_loss]").textContent = T.f4(run.test_loss);
    row.querySelector("[data-field=duration]").textContent = T.seconds(run.duration_seconds);
  }

  async function replaceRows() {
    const ticked = new Set(Array.from(body.querySelectorAll("input[name=ids]:checked"), (box) => box.value));
    const response = await fetch(table.dataset.rows);
    if (!response.ok) throw new Error(table.dataset.rows + " answered " + response.status);
    body.innerHTML = await response.text();
    for (const box of body.querySelectorAll("input[name=ids]")) box.checked = ticked.has(box.value);
  }

  async function tick() {
    const page = await T.getJSON(table.dataset.api);
    const total = document.getElementById("runs-total");
    if (total) {
      total.dataset.total = page.total;
      const words = { eq: "", gte: "more than ", about: "about " }[page.total_relation] || "";
      total.textContent = words + page.total.toLocaleString("en") + " matching";
    }
    if (page.runs.map((run) => run.id).join() !== shown().join()) {
      await replaceRows();
      return true;
    }
    for (const run of page.runs) {
      const row = body.querySelector(`tr[data-run-id="${run.id}"]`);
      if (row.dataset.status !== run.status || T.ACTIVE.includes(run.status)) update(row, run);
    }
    return true; // new runs may be queued at any time
  }

  T.poll(tick, 1000);
})();
