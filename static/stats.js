// dsms — the dashboard's automatic refresh (progressive enhancement: without this file the page
// is complete, and its « Actualiser » link reloads it).
// Every N seconds (data-refresh, 10 by default) the dashboard's content is fetched from
// /stats/contenu and swapped in place: no full reload, so the scroll position, the focus and the
// open data tables stay where they were. « Pause » stops it (remembered for this tab); it also
// waits while the tab is hidden. A region whose status changes is announced to screen readers.
(function () {
  "use strict";

  var box = document.getElementById("actualisation");
  var content = document.getElementById("tableau-contenu");
  if (!box || !content || !window.fetch || !window.DOMParser) {
    return;
  }
  var seconds = parseInt(box.getAttribute("data-refresh"), 10);
  if (!(seconds >= 1)) {
    seconds = 10;
  }
  var stateText = document.getElementById("actualisation-etat");
  var pauseButton = document.getElementById("actualisation-pause");
  var announcer = document.getElementById("annonces");
  var KEY = "dsms-actualisation-en-pause";
  var timer = null;
  var busy = false;
  var paused = false;
  try {
    paused = window.sessionStorage.getItem(KEY) === "1";
  } catch (e) {
    paused = false;
  }

  function running() {
    return "Actualisation automatique : " + seconds + " s";
  }

  function showState(extra) {
    stateText.textContent = paused ? "Actualisation automatique : en pause" : running() + (extra || "");
    pauseButton.textContent = paused ? "Reprendre" : "Pause";
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = null;
    if (!paused && !document.hidden) {
      timer = window.setTimeout(refresh, seconds * 1000);
    }
  }

  function statuses(root) {
    var found = {};
    root.querySelectorAll("[data-region]").forEach(function (card) {
      found[card.getAttribute("data-region")] = card.getAttribute("data-status");
    });
    return found;
  }

  function focusables(root) {
    return Array.from(root.querySelectorAll("a[href], button, summary, input:not([type=hidden])"));
  }

  function swap(fresh) {
    var before = statuses(content);
    var active = document.activeElement;
    var focusId = null;
    var focusIndex = -1;
    if (active && content.contains(active)) {
      focusId = active.id || null;
      focusIndex = focusables(content).indexOf(active);
    }
    var open = Array.from(content.querySelectorAll("details[id]")).filter(function (d) {
      return d.open;
    }).map(function (d) {
      return d.id;
    });

    var adopted = document.importNode(fresh, true);
    content.replaceWith(adopted);
    content = adopted;

    open.forEach(function (id) {
      var details = document.getElementById(id);
      if (details) {
        details.open = true;
      }
    });
    if (focusId && document.getElementById(focusId)) {
      document.getElementById(focusId).focus();
    } else if (focusIndex >= 0) {
      var again = focusables(content)[focusIndex];
      if (again) {
        again.focus();
      }
    }

    var after = statuses(content);
    var changes = Object.keys(after).filter(function (region) {
      return before[region] !== undefined && before[region] !== after[region];
    }).map(function (region) {
      return region + " : " + after[region];
    });
    if (changes.length > 0 && announcer) {
      announcer.textContent = "Changement d'état — " + changes.join(", ");
    }
  }

  function refresh() {
    if (busy || paused) {
      return;
    }
    busy = true;
    fetch("/stats/contenu", { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("tableau-contenu");
        if (!fresh) {
          throw new Error("contenu absent");
        }
        swap(fresh);
        showState("");
      })
      .catch(function () {
        showState(" — serveur injoignable, nouvel essai dans " + seconds + " s");
      })
      .then(function () {
        busy = false;
        schedule();
      });
  }

  pauseButton.addEventListener("click", function () {
    paused = !paused;
    try {
      window.sessionStorage.setItem(KEY, paused ? "1" : "0");
    } catch (e) {
      // Not remembered: the choice holds for this page only.
    }
    showState("");
    if (paused) {
      schedule();
    } else {
      refresh();
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      schedule();
    } else if (!paused) {
      refresh();
    }
  });

  stateText.hidden = false;
  pauseButton.hidden = false;
  showState("");
  schedule();
})();
