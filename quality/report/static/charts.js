/* enteronce report: draws every chart of the page with the local plotly.js. A chart is an empty
   <div> and its figure as JSON in <script type="application/json" class="plotly-figure"
   data-for="DIV-ID"> (data, not code: the browser never runs it), so the pages need no inline
   script and their CSP can refuse all of them. */
(function () {
  "use strict";
  function draw() {
    if (typeof Plotly === "undefined") return;
    document.querySelectorAll("script.plotly-figure[data-for]").forEach(function (source) {
      var div = document.getElementById(source.getAttribute("data-for"));
      if (!div) return;
      var figure = JSON.parse(source.textContent);
      div.style.width = "100%";
      div.style.height = String(figure.height || 340) + "px";
      Plotly.newPlot(div, figure.data || [], figure.layout || {}, figure.config || {});
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
