/* labrec UI: a few progressive enhancements; every page also works without this file.
 * Loaded from 'self' only (CSP script-src 'self'); no inline script anywhere. */
(function () {
  "use strict";

  // Confirmation, and one submission per form: a double-click cannot send a form twice.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) { return; }
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    if (form.method.toLowerCase() !== "post") { return; }
    if (form.dataset.submitted === "true") {
      event.preventDefault();
      return;
    }
    form.dataset.submitted = "true";
    var buttons = form.querySelectorAll("button");
    // Disabled after this tick, so the clicked button's own value is still sent.
    window.setTimeout(function () {
      buttons.forEach(function (button) {
        button.disabled = true;
        button.setAttribute("aria-busy", "true");
      });
    }, 0);
  });

  // Coming back with the Back button: forms may be used again (the server still de-duplicates).
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    document.querySelectorAll("form[data-submitted]").forEach(function (form) {
      delete form.dataset.submitted;
      form.querySelectorAll("button").forEach(function (button) {
        button.disabled = false;
        button.removeAttribute("aria-busy");
      });
    });
  });

  // Route choices follow the therapy (the server checks this too).
  var therapy = document.getElementById("therapy");
  var route = document.getElementById("route");
  function syncRoutes() {
    var chosen = therapy.options[therapy.selectedIndex];
    var allowed = ((chosen && chosen.dataset.routes) || "").split(" ");
    Array.prototype.forEach.call(route.options, function (option) {
      if (!option.value) { return; }
      var ok = allowed.indexOf(option.value) !== -1;
      option.hidden = !ok;
      option.disabled = !ok;
      if (!ok && option.selected) { route.value = ""; }
    });
  }
  if (therapy && route && therapy.tagName === "SELECT") {
    therapy.addEventListener("change", syncRoutes);
    syncRoutes();
  }

  // Live order status: fetch the server-rendered fragment every 2 s until the order is final.
  var live = document.querySelector("[data-poll]");
  if (live) {
    var url = live.getAttribute("data-poll");
    var last = "";
    var timer = window.setInterval(poll, 2000);
    var cancelForm = document.getElementById("cancel-form");
    function stop() { window.clearInterval(timer); }
    function poll() {
      window.fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (response.redirected || response.status === 401) {
            stop();
            window.location.reload();  // the session ended: the page sends the user to sign in
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html === null || html === last) { return; }
          last = html;
          var container = live.querySelector(".live");
          var holder = document.createElement("div");
          holder.innerHTML = html;  // autoescaped, same-origin fragment
          var fresh = holder.querySelector(".live");
          if (container && fresh) { container.replaceWith(fresh); }
          if (fresh && fresh.dataset.final === "true") {
            stop();
            if (cancelForm) { cancelForm.hidden = true; }
          }
        })
        .catch(function () { /* network blip: try again on the next tick */ });
    }
  }
})();
