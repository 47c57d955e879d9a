// Progressive enhancement only: every form works without this file.
// A submitted form's buttons are disabled so that a double click sends it once (the server
// also ignores a second post of the same form token).
document.addEventListener("submit", function (event) {
  const form = event.target;
  if (form.dataset.noDisable !== undefined) return;
  window.setTimeout(function () {
    form.querySelectorAll("button[type=submit], button:not([type])").forEach(function (b) {
      b.disabled = true;
    });
  }, 0);
});
