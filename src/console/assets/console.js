// ccpayout console: the only script, served from the binary (the Content-Security-Policy allows
// no other). It keeps a batch's progress up to date while it pays; pages work without it.
"use strict";
(function () {
  function progress() {
    var bar = document.getElementById("progress");
    if (!bar || !bar.dataset.url || bar.dataset.state !== "open") return;
    var counts = document.getElementById("counts");
    var state = document.getElementById("batch-state");
    function tick() {
      fetch(bar.dataset.url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (p) {
          if (!p) return;
          bar.max = Math.max(p.total, 1);
          bar.value = p.final;
          if (counts) counts.textContent = p.text;
          if (state) state.textContent = p.state;
          if (p.state !== "open") {
            // Finished: show the batch's final page (rows, reports) once. Not a reload: the
            // page may be the answer to a form, which must not be sent again.
            window.location.assign(bar.dataset.page);
            return;
          }
          window.setTimeout(tick, 2000);
        })
        .catch(function () { window.setTimeout(tick, 5000); });
    }
    window.setTimeout(tick, 1500);
  }
  document.addEventListener("DOMContentLoaded", function () {
    progress();
  });
})();
