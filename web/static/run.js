// The run page: learning curves that grow as epochs arrive, live progress, final figures.
(function () {
  "use strict";
  const T = window.Trainyard;
  const data = JSON.parse(document.getElementById("run-data").textContent);
  let run = data.run;
  let epochs = data.epochs;

  function curve(canvasId, title, series) {
    return new Chart(document.getElementById(canvasId), {
      type: "line",
      data: {
        labels: [],
        datasets: series.map(([key, label, colour, dash]) => ({
          key, label, data: [], borderColor: colour, backgroundColor: colour, borderDash: dash, spanGaps: true,
        })),
      },
      options: {
        animation: false,
        plugins: { title: { display: true, text: title }, legend: { labels: { boxWidth: 24, boxHeight: 2 } } },
        scales: { x: { title: { display: true, text: "epoch" } } },
      },
    });
  }

  const charts = {
    loss: curve("curve-loss", "Loss", [["loss", "train", "#2f6fde", []], ["val_loss", "validation", "#e0792b", [6, 4]]]),
    accuracy: curve("curve-accuracy", "Accuracy", [["accuracy", "train", "#2f6fde", []], ["val_accuracy", "validation", "#e0792b", [6, 4]]]),
  };
  window.trainyardCharts = charts;

  function drawCurves() {
    for (const chart of Object.values(charts)) {
      chart.data.labels = epochs.map((e) => e.epoch);
      for (const dataset of chart.data.datasets) {
        dataset.data = epochs.map((e) => e[dataset.key]);
        dataset.hidden = dataset.data.every((v) => v === null);
      }
      chart.update();
    }
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function drawEpochs() {
    const body = document.querySelector("#epochs tbody");
    body.replaceChildren(
      ...epochs.map((e) => {
        const tr = document.createElement("tr");
        tr.append(
          cell(e.epoch), cell(T.f4(e.loss)), cell(T.f4(e.accuracy)),
          cell(e.val_loss === null ? "" : T.f4(e.val_loss)),
          cell(e.val_accuracy === null ? "" : T.f4(e.val_accuracy)),
          cell(Number(e.seconds).toFixed(1)), cell(e.attempt),
        );
        return tr;
      }),
    );
  }

  // "Run N queued." was news when the page opened; once the run has moved on, it is not.
  function dropQueuedNote() {
    if (run.status === "queued") return;
    for (const note of document.querySelectorAll(".flash[data-category=queued]")) note.remove();
  }

  function drawRun() {
    dropQueuedNote();
    T.setStatus(document.getElementById("run-status"), run.status);
    document.getElementById("run-summary").dataset.status = run.status;
    T.renderProgress(document.querySelector("#run-summary [data-progress]"), run);
    document.getElementById("test-accuracy").textContent = T.f4(run.test_accuracy);
    document.getElementById("test-loss").textContent = T.f4(run.test_loss);
    document.getElementById("run-worker").textContent = run.worker || "—";
    document.getElementById("run-attempt").textContent = run.attempt;
    document.getElementById("run-duration").textContent = T.seconds(run.duration_seconds);
    const error = document.getElementById("run-error");
    error.textContent = run.error || "";
    error.hidden = !run.error;
    document.getElementById("cancel-form").hidden = !T.ACTIVE.includes(run.status);
    document.getElementById("cancel-note").hidden = !run.cancel_requested;
    document.getElementById("model-link").hidden = !run.model_url;
    for (const [key, value] of Object.entries(run.reproducibility || {})) {
      const el = document.querySelector(`[data-repro="${key}"]`);
      if (el) el.textContent = value === null ? "—" : value;
    }
  }

  async function showEvaluation() {
    const response = await fetch(data.evaluation);
    if (response.ok) document.getElementById("evaluation").innerHTML = await response.text();
  }

  async function tick() {
    const fresh = await T.getJSON(data.api);
    if (fresh.epochs_done !== run.epochs_done || fresh.status !== run.status) {
      epochs = (await T.getJSON(data.metrics)).epochs;
      drawEpochs();
      drawCurves();
    }
    run = fresh;
    drawRun();
    if (T.ACTIVE.includes(run.status)) return true;
    await showEvaluation();
    return false;
  }

  drawCurves();
  dropQueuedNote();
  if (T.ACTIVE.includes(run.status)) T.poll(tick, 1000);
})();
