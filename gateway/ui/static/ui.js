// flowbus UI: CSRF header for htmx requests, log filtering, Run form checks, the dashboard chart.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  document.addEventListener("htmx:configRequest", function (e) {
    if (meta) { e.detail.headers["X-CSRF-Token"] = meta.content; }
  });

  function filterLogs() {
    var level = document.getElementById("log-level");
    var search = document.getElementById("log-search");
    if (!level || !search) { return; }
    var min = parseInt(level.value, 10) || 0;
    var needle = search.value.toLowerCase();
    document.querySelectorAll("#logs .log-line").forEach(function (line) {
      var lvl = parseInt(line.getAttribute("data-level"), 10) || 0;
      var show = lvl >= min && (!needle || line.textContent.toLowerCase().indexOf(needle) >= 0);
      line.hidden = !show;
    });
  }
  document.addEventListener("input", function (e) {
    if (e.target.hasAttribute && e.target.hasAttribute("data-log-filter")) { filterLogs(); }
  });
  document.addEventListener("htmx:sseMessage", filterLogs);

  // The Run form: the same type checks as the server, shown next to the field before sending.
  function showError(input, msg) {
    var box = input.parentNode.querySelector(".field-error.client");
    if (!msg) { if (box) { box.remove(); } input.removeAttribute("aria-invalid"); return; }
    if (!box) {
      box = document.createElement("div");
      box.className = "field-error client";
      box.id = "client-err-" + input.id;
      input.parentNode.appendChild(box);
    }
    box.textContent = (input.labels && input.labels[0] ? input.labels[0].firstChild.textContent.trim() : input.name) + " " + msg;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", box.id);
  }
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.classList || !form.classList.contains("run-form")) { return; }
    var first = null;
    form.querySelectorAll("input[data-kind]").forEach(function (input) {
      var kind = input.getAttribute("data-kind"), v = input.value.trim(), msg = "";
      if (v && kind === "integer" && !/^[-+]?\d+$/.test(v)) { msg = "must be a whole number, got '" + v + "'"; }
      if (v && kind === "number" && !isFinite(Number(v))) { msg = "must be a number, got '" + v + "'"; }
      if (!v && input.getAttribute("aria-required") === "true") { msg = "is required"; }
      showError(input, msg);
      if (msg && !first) { first = input; }
    });
    if (first) { e.preventDefault(); first.focus(); }
  });

  function drawChart() {
    var el = document.getElementById("per-minute");
    var data = document.getElementById("per-minute-data");
    if (!el || !data || typeof uPlot === "undefined") { return; }
    var rows = JSON.parse(data.textContent);
    var dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
    var ink = dark ? "#c9d1d9" : "#3b4351";
    new uPlot({
      width: el.clientWidth || 500, height: 200,
      series: [{}, {label: "runs", stroke: "#4f7cff", fill: "rgba(79,124,255,0.15)"}],
      axes: [{stroke: ink, grid: {stroke: "rgba(127,127,127,0.15)"}},
             {stroke: ink, grid: {stroke: "rgba(127,127,127,0.15)"}}],
      legend: {show: false}
    }, [rows.map(function (r) { return r[0]; }), rows.map(function (r) { return r[1]; })], el);
  }
  window.addEventListener("load", drawChart);
})();
