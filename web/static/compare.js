// The compare page: overlaid learning curves (one colour per run) and the differences switch.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("compare-data").textContent);
  // Each run's colour is its swatch's, from the stylesheet: one palette for tables and curves.
  for (const run of data.runs) {
    const swatch = document.querySelector(`.swatch[data-run-id="${run.id}"]`);
    run.colour = swatch ? getComputedStyle(swatch).backgroundColor : "#888";
  }

  function datasets(key, valKey) {
    const out = [];
    for (const run of data.runs) {
      const rows = data.epochs[String(run.id)] || [];
      const common = { borderColor: run.colour, backgroundColor: run.colour, runId: run.id, spanGaps: true };
      out.push({ ...common, label: "run " + run.id + " train", kind: "train", data: rows.map((e) => ({ x: e.epoch, y: e[key] })) });
      if (rows.some((e) => e[valKey] !== null)) {
        out.push({
          ...common, label: "run " + run.id + " validation", kind: "validation", borderDash: [6, 4],
          data: rows.map((e) => ({ x: e.epoch, y: e[valKey] })),
        });
      }
    }
    return out;
  }

  function chart(canvasId, title, key, valKey) {
    return new Chart(document.getElementById(canvasId), {
      type: "line",
      data: { datasets: datasets(key, valKey) },
      options: {
        animation: false,
        plugins: { title: { display: true, text: title }, legend: { labels: { boxWidth: 24, boxHeight: 2 } } },
        scales: { x: { type: "linear", title: { display: true, text: "epoch" }, ticks: { precision: 0 } } },
      },
    });
  }

  const charts = {
    loss: chart("compare-loss", "Loss", "loss", "val_loss"),
    accuracy: chart("compare-accuracy", "Accuracy", "accuracy", "val_accuracy"),
  };
  window.trainyardCharts = charts;

  // Live: while a compared run is queued or running, follow it once a second; curves grow and
  // the figures fill in as on the run page. Polling stops when all of them have finished.
  const T = window.Trainyard;
  const cell = (run, field) => document.querySelector(`[data-run-id="${run.id}"][data-field="${field}"]`);

  function figure(run, field, better) {
    const td = cell(run, field);
    const value = run[field];
    const delta = run.delta[field];
    td.dataset.value = value === null ? "" : value;
    td.dataset.delta = delta === null ? "" : delta;
    td.textContent = T.f4(value) + " ";
    if (run.id === data.baseline) return;
    const span = document.createElement("span");
    span.className = "delta";
    if (delta === null || delta === 0) span.textContent = "±0";
    else {
      span.className += (delta > 0) === (better === "up") ? " better" : " worse";
      span.textContent = (delta > 0 ? "+" : "") + delta.toFixed(4);
    }
    td.append(span);
  }

  function show(answer) {
    data.baseline = answer.baseline;
    data.epochs = answer.epochs;
    for (const run of answer.runs) {
      T.setStatus(cell(run, "status"), run.status);
      cell(run, "epochs").textContent = run.epochs_done + " / " + run.epochs_total;
      cell(run, "best_epoch").textContent = run.best_epoch || "—";
      cell(run, "training_seconds").textContent = T.seconds(run.training_seconds);
      cell(run, "duration_seconds").textContent = T.seconds(run.duration_seconds);
      figure(run, "test_accuracy", "up");
      figure(run, "test_loss", "down");
    }
    charts.loss.data.datasets = datasets("loss", "val_loss");
    charts.accuracy.data.datasets = datasets("accuracy", "val_accuracy");
    charts.loss.update();
    charts.accuracy.update();
  }

  async function tick() {
    const answer = await T.getJSON(data.api);
    show(answer);
    return answer.runs.some((run) => T.ACTIVE.includes(run.status));
  }

  const statuses = Array.from(document.querySelectorAll("[data-field=status]"), (el) => el.textContent.trim());
  if (statuses.some((status) => T.ACTIVE.includes(status))) T.poll(tick, 1000);

  const toggle = document.getElementById("only-differences");
  toggle.addEventListener("change", () => {
    for (const row of document.querySelectorAll("#params-table tr[data-differs=false]")) {
      row.hidden = toggle.checked;
    }
    // Keep the address shareable: it says what is shown.
    const url = new URL(window.location.href);
    if (toggle.checked) url.searchParams.delete("all");
    else url.searchParams.set("all", "1");
    history.replaceState(null, "", url);
  });
})();
