// hookgate console: progressive enhancement only. Every page works without this script;
// with it, the events list refreshes itself (pausable) and Replay answers in place.
(function () {
  "use strict";
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  // Replaces the element with id `id` by the same element of the page at `url`.
  function refreshRegion(id, url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (html) {
        // DOMParser never runs scripts; the server escaped every value.
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById(id);
        var old = document.getElementById(id);
        if (fresh && old) { old.replaceWith(fresh); }
      });
  }

  // Auto-refresh of the events list, paused with the checkbox (remembered in this tab).
  var auto = document.getElementById("auto-refresh");
  if (auto) {
    var key = "hookgate.autorefresh";
    auto.checked = sessionStorage.getItem(key) !== "off";
    auto.addEventListener("change", function () {
      sessionStorage.setItem(key, auto.checked ? "on" : "off");
    });
    setInterval(function () {
      if (auto.checked && !document.hidden) {
        refreshRegion("events-region", window.location.href).catch(function () {});
      }
    }, 5000);
  }

  // Replay without a full reload: the form is posted with fetch, the answer shown in place,
  // then the timeline refreshed while the replay runs.
  var replay = document.getElementById("replay-form");
  if (replay) {
    replay.addEventListener("submit", function (e) {
      e.preventDefault();
      var out = document.getElementById("replay-result");
      var confirmBox = replay.querySelector('input[name="confirm"]');
      if (confirmBox && !confirmBox.checked) {
        out.textContent = "Tick the box to confirm the replay.";
        return;
      }
      var body = new URLSearchParams(new FormData(replay));
      out.textContent = "Replaying…";
      fetch(replay.action, {
        method: "POST", credentials: "same-origin", body: body,
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
      }).then(function (r) { return r.json(); }).then(function (answer) {
        if (answer.error) {
          out.textContent = "Not replayed: " + answer.message;
          out.className = "flash error";
          return;
        }
        out.textContent = "Replayed: the event is " + answer.status + " (generation " + answer.generation + ").";
        out.className = "flash";
        if (confirmBox) { confirmBox.checked = false; }
        var tries = 0;
        var poll = setInterval(function () {
          tries += 1;
          refreshRegion("event-live", window.location.pathname).catch(function () {});
          if (tries >= 10) { clearInterval(poll); }
        }, 1000);
      }).catch(function (err) {
        out.textContent = "Replay failed: " + err;
        out.className = "flash error";
      });
    });
  }
  // Bulk replay with progress: the replay (not the dry run) starts in the background and its
  // counts are shown as it goes. Without the script the form waits for the whole run.
  var bulk = document.getElementById("bulk-form");
  if (bulk) {
    bulk.addEventListener("submit", function (e) {
      var submitter = e.submitter;
      if (!submitter || submitter.value !== "replay") { return; }
      var confirmBox = document.getElementById("bulk-confirm");
      if (!confirmBox || !confirmBox.checked) { return; } // the server explains
      e.preventDefault();
      var out = document.getElementById("bulk-progress");
      document.querySelectorAll("main [role=alert]").forEach(function (n) { n.remove(); });
      var body = new URLSearchParams(new FormData(bulk));
      body.set("action", "replay");
      out.className = "flash";
      out.textContent = "Starting…";
      // (`bulk.action` would be the buttons named "action", not the form's URL.)
      fetch(bulk.getAttribute("action"), {
        method: "POST", credentials: "same-origin", body: body,
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
      }).then(function (r) { return r.json(); }).then(function (answer) {
        if (answer.error) { out.className = "flash error"; out.textContent = answer.message; return; }
        var poll = setInterval(function () {
          fetch(answer.progress_url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
            .then(function (r) { return r.json(); })
            .then(function (run) {
              var skipped = Object.keys(run.skipped || {}).map(function (k) { return k + " " + run.skipped[k]; }).join(", ");
              out.textContent = (run.done ? "Done: replayed " : "Replaying: ") + run.replayed + " of " + run.matched +
                " matched" + (skipped ? " (skipped: " + skipped + ")" : "") + (run.stopped ? "; stopped: " + run.stopped : "") + ".";
              if (run.done) { clearInterval(poll); }
            }).catch(function () {});
        }, 500);
      }).catch(function (err) { out.className = "flash error"; out.textContent = "Bulk replay failed: " + err; });
    });
  }
})();
