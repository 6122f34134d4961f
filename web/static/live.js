// Live progress shared by the runs page and the run page: short polling of the JSON API.
// Polling (not server-sent events) works behind any proxy and with gunicorn's sync workers,
// because no request stays open; one small request a second per open page is cheap.
window.Trainyard = (function () {
  "use strict";
  const ACTIVE = ["queued", "running"];

  function f4(value) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(4);
  }

  function seconds(value) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(1) + " s";
  }

  // Mirrors the `progress` macro in templates/_macros.html.
  function renderProgress(el, run) {
    el.dataset.status = run.status;
    el.dataset.epochsDone = run.epochs_done;
    el.dataset.epochsTotal = run.epochs_total;
    const bar = el.querySelector("progress");
    bar.max = run.epochs_total || 1;
    bar.value = run.epochs_done;
    el.querySelector(".progress-text").textContent =
      run.status === "queued"
        ? "queued" + (run.queue_position ? " · #" + run.queue_position + " in queue" : "")
        : "epoch " + run.epochs_done + " of " + run.epochs_total;
    let detail = "";
    if (run.latest_loss !== null && run.latest_loss !== undefined) {
      detail = "loss " + f4(run.latest_loss) + " · acc " + f4(run.latest_accuracy);
    }
    if (run.status === "running" && run.seconds_left !== null && run.seconds_left !== undefined) {
      detail += " · " + Math.round(run.seconds_left) + " s left";
    }
    el.querySelector(".progress-detail").textContent = detail;
  }

  function setStatus(el, status) {
    el.textContent = status;
    el.className = "status status-" + status;
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(url + " answered " + response.status);
    return response.json();
  }

  // Call `tick` every `ms` until it returns false; errors are logged and retried.
  function poll(tick, ms) {
    async function loop() {
      let again = true;
      if (!document.hidden) {
        try {
          again = await tick();
        } catch (error) {
          console.warn("trainyard: refresh failed", error);
        }
      }
      if (again !== false) setTimeout(loop, ms);
    }
    setTimeout(loop, ms);
  }

  return { ACTIVE, f4, seconds, renderProgress, setStatus, getJSON, poll };
})();
