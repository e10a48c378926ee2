// certward console: the little that htmx does not do. Everything works without it.
"use strict";

// "Copy" buttons: <button type="button" data-copy="ELEMENT-ID">.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent).then(function () {
    button.textContent = "Copied";
  });
});
