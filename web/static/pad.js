// The "Try it" pad (templates/_pad.html): draw a digit with a mouse, a finger or a pen; while
// you draw, the canvas goes as a PNG to each run's POST /api/runs/<id>/predict (at most one request
// in flight per run and one every THROTTLE_MS), and the answers fill the ten bars, the label and
// the 28x28 image the model saw. Pointer events cover mouse, touch and pen alike.
(function () {
  "use strict";
  const THROTTLE_MS = 150;
  const pad = document.getElementById("try-it");
  if (!pad) return;
  const canvas = document.getElementById("pad-canvas");
  const context = canvas.getContext("2d");
  const seen = document.getElementById("pad-seen");
  const note = document.getElementById("pad-note");
  const runs = Array.from(pad.querySelectorAll(".pad-run"));

  let drawing = false;
  let inked = false;
  let last = null;
  let timer = null;
  let inFlight = 0;
  let dirty = false;
  let generation = 0; // answers to a drawing that was cleared since are dropped

  function blank() {
    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
  }

  function point(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  }

  function stroke(from, to) {
    context.strokeStyle = "#000";
    context.lineWidth = canvas.width / 14;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x, to.y);
    context.stroke();
  }

  function show(run, answer) {
    const prediction = answer.predictions[0];
    run.querySelector(".pad-label").textContent = String(prediction.label);
    run.querySelectorAll("tr[data-digit]").forEach(function (row) {
      const p = prediction.probabilities[Number(row.dataset.digit)];
      row.querySelector("meter").value = p;
      row.querySelector(".pad-pct").textContent = (100 * p).toFixed(1) + "%";
      row.classList.toggle("top", Number(row.dataset.digit) === prediction.label);
    });
  }

  function reset() {
    runs.forEach(function (run) {
      run.querySelector(".pad-label").textContent = "";
      run.querySelectorAll("tr[data-digit]").forEach(function (row) {
        row.querySelector("meter").value = 0;
        row.querySelector(".pad-pct").textContent = "";
        row.classList.remove("top");
      });
    });
    seen.hidden = true;
    note.textContent = "";
  }

  function predict(blob, run, asked) {
    return fetch(run.dataset.url, {
      method: "POST",
      headers: { "Content-Type": "image/png", Accept: "application/json" },
      body: blob,
      credentials: "same-origin",
    })
      .then(function (response) {
        return response.json().then(function (body) {
          if (asked !== generation) return;
          if (!response.ok) {
            note.textContent = body.error ? body.error.message : "HTTP " + response.status;
            return;
          }
          note.textContent = "";
          show(run, body);
          seen.src = body.image;
          seen.hidden = false;
        });
      })
      .catch(function (error) {
        if (asked === generation) note.textContent = "no answer: " + error;
      });
  }

  function send() {
    timer = null;
    const ready = runs.filter(function (run) {
      return run.dataset.ready === "true";
    });
    if (!inked || !ready.length) return;
    if (inFlight) {
      dirty = true; // sent again once the answers in flight are in
      return;
    }
    dirty = false;
    const asked = generation;
    inFlight = ready.length; // counted now: toBlob answers later
    canvas.toBlob(function (blob) {
      ready.forEach(function (run) {
        predict(blob, run, asked).finally(function () {
          inFlight -= 1;
          if (!inFlight && dirty) schedule();
        });
      });
    }, "image/png");
  }

  function schedule() {
    if (timer === null) timer = setTimeout(send, THROTTLE_MS);
  }

  canvas.addEventListener("pointerdown", function (event) {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    last = point(event);
    stroke(last, last);
    inked = true;
    schedule();
  });
  canvas.addEventListener("pointermove", function (event) {
    if (!drawing) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    (events.length ? events : [event]).forEach(function (each) {
      const next = point(each);
      stroke(last, next);
      last = next;
    });
    schedule();
  });
  function end() {
    if (!drawing) return;
    drawing = false;
    schedule();
  }
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);

  document.getElementById("pad-clear").addEventListener("click", function () {
    generation += 1;
    inked = false;
    dirty = false;
    blank();
    reset();
  });

  // On a run's page the pad appears when the run succeeds (run.js then shows the model link).
  const follow = pad.dataset.follow && document.getElementById(pad.dataset.follow);
  if (follow) {
    const reveal = function () {
      if (follow.hidden) return;
      pad.hidden = false;
      runs.forEach(function (run) {
        run.dataset.ready = "true";
        run.querySelectorAll(".pad-nomodel").forEach(function (hint) {
          hint.remove();
        });
      });
    };
    new MutationObserver(reveal).observe(follow, { attributes: true, attributeFilter: ["hidden"] });
    reveal();
  }

  blank();
})();
