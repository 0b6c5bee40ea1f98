// Live progress of the batch conversion on the plan page: polls /api/progress.
(function () {
  var box = document.getElementById("progress");
  if (!box) return;
  var bar = box.querySelector(".progress > div");
  var text = document.getElementById("progress-text");
  var button = document.getElementById("run-plan");
  function human(n) {
    var units = ["B", "KB", "MB", "GB", "TB"], i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : n.toFixed(0)) + " " + units[i];
  }
  function poll() {
    fetch("/api/progress", {cache: "no-store"}).then(function (r) { return r.json(); }).then(function (s) {
      var pct = s.overall_total ? Math.min(100, 100 * s.overall_done / s.overall_total) : (s.finished ? 100 : 0);
      bar.style.width = pct.toFixed(1) + "%";
      box.dataset.state = s.state;
      if (s.state === "running") {
        if (button) button.disabled = true;
        text.textContent = "Converting " + (s.index + 1) + " of " + s.items + ": " + (s.current || "") +
          " (" + human(s.overall_done) + " of " + human(s.overall_total) + ")";
        setTimeout(poll, 400);
      } else if (s.state === "finished") {
        text.textContent = "Finished: " + s.done + " converted, " + s.failed + " failed" +
          (s.error ? " (" + s.error + ")" : "") + ". Saved " + human(s.saved_bytes) + ".";
        if (box.dataset.reload !== "no") {
          box.dataset.reload = "no";
          setTimeout(function () { window.location.reload(); }, 1200);
        }
      }
    }).catch(function () { setTimeout(poll, 1500); });
  }
  if (box.dataset.state === "running") poll();
  var form = document.getElementById("run-form");
  if (form) form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    button.disabled = true;
    fetch(form.action, {method: "POST", body: new URLSearchParams(new FormData(form))}).then(function () {
      box.dataset.state = "running";
      box.dataset.reload = "";
      text.textContent = "Starting...";
      poll();
    });
  });
})();
