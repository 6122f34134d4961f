// Draws a run's learning curves from the JSON the page embeds.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("run-data").textContent);

  function curve(canvasId, title, series) {
    const labels = data.epochs.map((e) => e.epoch);
    return new Chart(document.getElementById(canvasId), {
      type: "line",
      data: {
        labels,
        datasets: series.map(([key, label]) => ({ label, data: data.epochs.map((e) => e[key]), spanGaps: true })),
      },
      options: { animation: false, plugins: { title: { display: true, text: title } }, scales: { x: { title: { display: true, text: "epoch" } } } },
    });
  }

  curve("curve-loss", "Loss", [["loss", "train"], ["val_loss", "validation"]]);
  curve("curve-accuracy", "Accuracy", [["accuracy", "train"], ["val_accuracy", "validation"]]);
})();
