// waqtor dashboard: confirmation of destructive forms and the live-connection indicator.
// No inline scripts anywhere (the Content-Security-Policy forbids them).
(function () {
  "use strict";

  // <form data-confirm="Question?"> asks before it submits.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  function setLive(text, state) {
    var marks = document.querySelectorAll("[data-live]");
    for (var i = 0; i < marks.length; i++) {
      marks[i].textContent = text;
      marks[i].setAttribute("data-state", state);
    }
  }
  document.addEventListener("htmx:sseOpen", function () { setLive("live", "open"); });
  document.addEventListener("htmx:sseError", function () { setLive("reconnecting…", "error"); });
})();
