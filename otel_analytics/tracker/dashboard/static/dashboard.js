// otel-analytics dashboard: draws the page's charts (Chart.js, shipped beside this file) from the
// JSON the page carries, and keeps the page live: it polls /dashboard/version and, when something
// new was stored, fetches the same URL and swaps the page's main part (pausable, remembered).
(function () {
  "use strict";
  var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  var POLL_MS = 5000;

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function drawCharts(root) {
    var holder = root.querySelector("#chart-data");
    if (!holder || !window.Chart) return;
    var data = JSON.parse(holder.textContent);
    var text = cssVar("--text", "#222");
    var grid = cssVar("--grid", "#ddd");
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var series = data[canvas.dataset.chart] || [];
      var usd = canvas.dataset.unit === "usd";
      var previous = window.Chart.getChart(canvas);
      if (previous) previous.destroy();
      new window.Chart(canvas, {
        type: "bar",
        data: {
          labels: data.slots,
          datasets: series.map(function (s, i) {
            return {
              label: s.name,
              data: s.values.map(function (v) { return usd ? v / 100000 : v; }),
              backgroundColor: PALETTE[i % PALETTE.length],
              stack: "all"
            };
          })
        },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          scales: {
            x: { stacked: true, ticks: { color: text }, grid: { color: grid } },
            y: { stacked: true, ticks: { color: text }, grid: { color: grid } }
          },
          plugins: { legend: { labels: { color: text } } }
        }
      });
      canvas.dataset.drawn = String(series.length);
    });
  }

  function wire(root) {
    root.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  var version = null;
  var paused = window.localStorage.getItem("otel-analytics-live") === "off";

  function showLive() {
    var button = document.getElementById("live");
    if (!button) return;
    button.setAttribute("aria-pressed", paused ? "false" : "true");
    button.textContent = paused ? "Live: paused" : "Live";
  }

  function refresh() {
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        var current = document.getElementById("main");
        if (fresh && current) {
          current.replaceWith(fresh);
          drawCharts(fresh);
          wire(fresh);
        }
      })
      .catch(function () {});
  }

  function typing() {
    var active = document.activeElement;
    return !!active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }

  function poll() {
    // Not while hidden, paused, or while someone fills in a filter (a refresh would reset it).
    if (paused || document.hidden || typing()) return;
    fetch("/dashboard/version", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (answer) {
        if (!answer) return;
        if (version !== null && answer.version !== version) refresh();
        version = answer.version;
      })
      .catch(function () {});
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    wire(document);
    showLive();
    var button = document.getElementById("live");
    if (button) {
      button.addEventListener("click", function () {
        paused = !paused;
        window.localStorage.setItem("otel-analytics-live", paused ? "off" : "on");
        showLive();
      });
    }
    if (document.getElementById("main") && !document.querySelector("form.login")) {
      poll();
      window.setInterval(poll, POLL_MS);
    }
  });
})();
