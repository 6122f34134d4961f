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

  window.trainyardCharts = {
    loss: chart("compare-loss", "Loss", "loss", "val_loss"),
    accuracy: chart("compare-accuracy", "Accuracy", "accuracy", "val_accuracy"),
  };

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
