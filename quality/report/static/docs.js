/* enteronce: what Great Expectations' Data Docs did with inline scripts and jQuery/Bootstrap, done
   from this one local file, so that the pages' CSP can refuse every inline script and handler:
   - collapsible sections (links with data-toggle="collapse" show or hide the element they name),
   - the validation filter of a result page (Show All / Failed Only),
   - the index's filter (text and failed-only).
   It only reads the page and toggles classes and the `hidden` property; it never writes HTML. */
(function () {
  "use strict";

  function targetOf(link) {
    var ref = link.getAttribute("href") || "";
    if (ref.charAt(0) !== "#") return null;
    var id = ref.slice(1);
    try { id = decodeURIComponent(id); } catch (e) { /* keep it as written */ }
    return id ? document.getElementById(id) : null;
  }

  function toggle(link) {
    var target = targetOf(link);
    if (!target) return;
    var open = !target.classList.contains("show");
    target.classList.toggle("show", open);
    document.querySelectorAll('a[data-toggle="collapse"]').forEach(function (other) {
      if (targetOf(other) === target) {
        other.setAttribute("aria-expanded", String(open));
        other.classList.toggle("collapsed", !open);
      }
    });
  }

  // GX's showAllValidations() / hideSucceededValidations(), without jQuery.
  function showSucceeded(show) {
    var hide = !show;
    document.querySelectorAll(".hide-succeeded-validation-target-child").forEach(function (el) {
      if (el.parentElement) el.parentElement.hidden = hide;
    });
    document.querySelectorAll(".hide-succeeded-validation-target").forEach(function (el) { el.hidden = hide; });
    document.querySelectorAll(".hide-succeeded-validations-column-section-target-child").forEach(function (el) {
      var section = el.parentElement && el.parentElement.parentElement;
      if (!section) return;
      section.hidden = hide;
      if (section.id) {
        document.querySelectorAll("a[href]").forEach(function (a) {
          var ref = a.getAttribute("href");
          if (ref === "#" + section.id) {
            var item = a.closest("li") || a;
            item.hidden = hide;
          }
        });
      }
    });
  }

  function chooseFilter(label) {
    var group = label.closest(".btn-group-toggle");
    if (!group) return;
    group.querySelectorAll("label").forEach(function (other) {
      var on = other === label;
      other.classList.toggle("active", on);
      var radio = other.querySelector("input[type=radio]");
      if (radio) radio.checked = on;
    });
    showSucceeded(!/failed/i.test(label.textContent || ""));
  }

  // The index: rows with data-search (their text) and data-success ("true" / "false").
  function filterIndex() {
    var box = document.getElementById("docs-search");
    var failed = document.getElementById("docs-failed-only");
    if (!box || !failed) return;
    var words = (box.value || "").toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    document.querySelectorAll("tr[data-search]").forEach(function (row) {
      var text = row.getAttribute("data-search").toLowerCase();
      var ok = (!failed.checked || row.getAttribute("data-success") === "false") &&
        words.every(function (w) { return text.indexOf(w) !== -1; });
      row.hidden = !ok;
      if (ok) shown += 1;
    });
    var count = document.getElementById("docs-shown");
    if (count) count.textContent = String(shown);
  }

  document.addEventListener("click", function (event) {
    var el = event.target instanceof Element ? event.target : null;
    if (!el) return;
    var link = el.closest('a[data-toggle="collapse"]');
    if (link) {
      event.preventDefault();
      toggle(link);
      return;
    }
    var label = el.closest(".btn-group-toggle label");
    if (label) {
      event.preventDefault();
      chooseFilter(label);
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("docs-search");
    var failed = document.getElementById("docs-failed-only");
    if (box) box.addEventListener("input", filterIndex);
    if (failed) failed.addEventListener("change", filterIndex);
    filterIndex();
  });
})();
