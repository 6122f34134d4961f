// The study page: mean learning curves with a band for the spread across seeds, and live
// progress: while runs are queued or running it polls the API, and refetches the tables when
// a run finishes.
(function () {
  "use strict";
  const T = window.Trainyard;
  const data = JSON.parse(document.getElementById("study-data").textContent);
  let study = data.study;

  function colour(index) {
    const swatch = document.querySelector(`.swatch[data-config="${index}"]`);
    return swatch ? getComputedStyle(swatch).backgroundColor : "#888";
  }

  function translucent(rgb) {
    return rgb.replace("rgb(", "rgba(").replace(")", ", 0.18)");
  }

  // Per configuration: the lower edge of the band, the upper edge filled down to it, the mean.
  function datasets(key) {
    const out = [];
    for (const config of study.configurations) {
      const points = config.curves[key] || [];
      const line = colour(config.index);
      const spread = (p, sign) => ({ x: p.epoch, y: p.mean + sign * (p.std || 0) });
      out.push({ label: config.label + " −1 sd", data: points.map((p) => spread(p, -1)), borderWidth: 0,
                 pointRadius: 0, fill: false, config: config.index, kind: "low" });
      out.push({ label: config.label + " +1 sd", data: points.map((p) => spread(p, 1)), borderWidth: 0,
                 pointRadius: 0, fill: "-1", backgroundColor: translucent(line), config: config.index, kind: "high" });
      out.push({ label: config.label, data: points.map((p) => ({ x: p.epoch, y: p.mean })), borderColor: line,
                 backgroundColor: line, config: config.index, kind: "mean" });
    }
    return out;
  }

  function chart(canvasId, title, key) {
    return new Chart(document.getElementById(canvasId), {
      type: "line",
      data: { datasets: datasets(key) },
      options: {
        animation: false,
        plugins: {
          title: { display: true, text: title },
          legend: { labels: { filter: (item, all) => all.datasets[item.datasetIndex].kind === "mean" } },
        },
        scales: { x: { type: "linear", title: { display: true, text: "epoch" }, ticks: { precision: 0 } } },
      },
    });
  }

  const charts = { loss: chart("study-loss", "Training loss", "loss"), accuracy: chart("study-accuracy", "Training accuracy", "accuracy") };
  window.trainyardCharts = charts;

  function done(s) {
    return s.counts.succeeded + s.counts.failed + s.counts.cancelled + (s.counts.pruned || 0);
  }

  async function tick() {
    const fresh = await T.getJSON(data.api);
    const moved = done(fresh) !== done(study) || fresh.runs !== study.runs || fresh.status !== study.status;
    const grew = JSON.stringify(fresh.configurations.map((c) => c.curves)) !== JSON.stringify(study.configurations.map((c) => c.curves));
    study = fresh;
    if (study.status !== "queued") {
      for (const note of document.querySelectorAll(".flash[data-category=queued]")) note.remove();
    }
    if (moved) {
      const response = await fetch(data.summary);
      if (response.ok) document.getElementById("study-summary").innerHTML = await response.text();
      T.setStatus(document.getElementById("study-status"), study.status);
      document.getElementById("study-cancel-form").hidden = !T.ACTIVE.includes(study.status);
    }
    if (moved || grew) {
      charts.loss.data.datasets = datasets("loss");
      charts.accuracy.data.datasets = datasets("accuracy");
      charts.loss.update();
      charts.accuracy.update();
    }
    return T.ACTIVE.includes(study.status);
  }

  if (T.ACTIVE.includes(study.status)) T.poll(tick, 1500);
})();
