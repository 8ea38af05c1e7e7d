// Applies the colour theme before the page paints (a classic script, not a module, so it
// runs before first render). The theme follows the system's `prefers-color-scheme` unless
// overridden: `?theme=light|dark` in the URL (this page load only) or a choice made with the
// theme button (kept in localStorage as `cairn.theme`).
(function () {
  "use strict";
  var choice = null;
  try {
    var q = new URLSearchParams(location.search).get("theme");
    if (q === "light" || q === "dark") choice = q;
    else {
      var saved = localStorage.getItem("cairn.theme");
      if (saved === "light" || saved === "dark") choice = saved;
    }
  } catch (e) {
    // storage may be disabled; follow the system
  }
  if (choice) document.documentElement.dataset.theme = choice;
})();
