// offerpool dashboard: refresh the main content in place; say so when the master is gone.
// The server renders (and escapes) all markup; this script only swaps it in.
(function () {
  "use strict";
  var body = document.body;
  var period = parseFloat(body.getAttribute("data-refresh")) || 2;
  var main = document.getElementById("main");
  var conn = document.getElementById("conn");
  var failures = 0;
  var timer = null;

  function show(ok, text) {
    conn.textContent = text;
    conn.className = "conn " + (ok ? "ok" : "down");
  }

  function schedule() {
    // back off while the master is unreachable: period, 2x, 4x ... at most 30 s
    var wait = period * Math.pow(2, Math.min(failures, 4));
    timer = window.setTimeout(refresh, Math.min(wait, 30) * 1000);
    return wait;
  }

  function failed(why) {
    failures += 1;
    var wait = Math.min(period * Math.pow(2, Math.min(failures, 4)), 30);
    show(false, "master unreachable (" + why + ") · retrying in " + Math.round(wait) + " s");
    body.classList.add("offline");
    schedule();
  }

  function refresh() {
    if (document.hidden) { schedule(); return; }
    var request = new XMLHttpRequest();
    request.open("GET", window.location.href, true);
    request.setRequestHeader("X-Fragment", "1");
    request.timeout = 10000;
    request.onload = function () {
      if (request.status === 0 || request.status >= 500) { failed("HTTP " + request.status); return; }
      failures = 0;
      body.classList.remove("offline");
      main.innerHTML = request.responseText;  // server-escaped markup
      var h = main.querySelector("h1[data-title]");
      if (h) { document.title = h.getAttribute("data-title") + " · offerpool"; }
      show(true, "live · updated " + new Date().toLocaleTimeString());
      schedule();
    };
    request.onerror = function () { failed("no connection"); };
    request.ontimeout = function () { failed("timeout"); };
    request.send();
  }

  schedule();
})();
