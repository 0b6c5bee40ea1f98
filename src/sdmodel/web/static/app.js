// Live progress of the batch conversion on the plan page: polls /api/progress (its "text" is in
// the page's language).
(function () {
  var box = document.getElementById("progress");
  if (!box) return;
  var bar = box.querySelector(".progress > div");
  var text = document.getElementById("progress-text");
  var button = document.getElementById("run-plan");
  function poll() {
    fetch("/api/progress", {cache: "no-store"}).then(function (r) { return r.json(); }).then(function (s) {
      var pct = s.overall_total ? Math.min(100, 100 * s.overall_done / s.overall_total) : (s.finished ? 100 : 0);
      bar.style.width = pct.toFixed(1) + "%";
      box.dataset.state = s.state;
      if (s.state === "running") {
        if (button) button.disabled = true;
        text.textContent = s.text;
        setTimeout(poll, 400);
      } else if (s.state === "finished") {
        text.textContent = s.text;
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
      text.textContent = box.dataset.starting;
      poll();
    });
  });
})();
