// ccpayout console: the only script, served from the binary (the Content-Security-Policy allows
// no other). It keeps a batch's progress up to date while it pays; pages work without it.
"use strict";
(function () {
  function progress() {
    var bar = document.getElementById("progress");
    if (!bar || !bar.dataset.url || bar.dataset.state !== "open") return;
    var counts = document.getElementById("counts");
    function tick() {
      fetch(bar.dataset.url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (p) {
          if (!p) return;
          if (p.state === "open") {
            bar.max = Math.max(p.total, 1);
            bar.value = p.final;
            if (counts) counts.textContent = p.text;
          } else {
            // Finished: load the batch's final page (its rows and reports) once; that page
            // polls no more.
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
