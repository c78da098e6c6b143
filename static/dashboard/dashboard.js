/* Draws the dashboard's charts from the JSON the page embeds (#dashboard-data), with the vendored
   Chart.js. No network: everything comes from this app. Chart.getChart(canvas) finds each chart. */
(function () {
  "use strict";
  var COLORS = {
    ok: "#2e7d32", client_error: "#f9a825", upstream_error: "#c62828",
    rate_limited: "#7b1fa2", client_closed: "#90a4ae"
  };
  var PALETTE = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#558b2f", "#4e342e",
    "#283593", "#f9a825"];

  function hasData(values) {
    return values.some(function (v) { return v !== null && v !== 0; });
  }

  function showEmpty(canvas) {
    var note = document.createElement("div");
    note.className = "kp-empty";
    note.textContent = "No data in this range";
    canvas.parentNode.appendChild(note);
    canvas.style.display = "none";
  }

  function draw(id, config, values) {
    var canvas = document.getElementById(id);
    if (!canvas) { return; }
    if (!hasData(values)) { showEmpty(canvas); return; }
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options);
    new window.Chart(canvas, config);
  }

  // Draws each account's limit as a thick horizontal mark across its bar (dataset 0 holds the limits).
  var limitMarks = {
    id: "limitMarks",
    afterDatasetsDraw: function (chart) {
      var bars = chart.getDatasetMeta(1).data, limits = chart.data.datasets[0].data, y = chart.scales.y;
      var ctx = chart.ctx;
      ctx.save();
      ctx.strokeStyle = "#c62828";
      ctx.lineWidth = 3;
      bars.forEach(function (bar, i) {
        var half = bar.width * 0.6, top = y.getPixelForValue(limits[i]);
        ctx.beginPath();
        ctx.moveTo(bar.x - half, top);
        ctx.lineTo(bar.x + half, top);
        ctx.stroke();
      });
      ctx.restore();
    }
  };

  function flat(arrays) { return [].concat.apply([], arrays); }

  function horizontalBars(id, pairs, color) {
    draw(id, {
      type: "bar",
      data: { labels: pairs.labels, datasets: [{ label: "requests", data: pairs.data, backgroundColor: color }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } }
    }, pairs.data);
  }

  function render(data) {
    var timeAxis = { ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 16 } };
    draw("chart-outcomes", {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.outcomes.map(function (o) {
          return { label: o.label, data: o.data, backgroundColor: COLORS[o.key] || "#78909c", stack: "all" };
        })
      },
      options: { scales: { x: Object.assign({ stacked: true }, timeAxis), y: { stacked: true, beginAtZero: true } } }
    }, flat(data.outcomes.map(function (o) { return o.data; })));

    var lat = data.latency;
    // A line needs two values: a series with one (say, requests only in the current hour) would draw
    // nothing at all, so its lone value gets a visible point.
    var lonePoint = function (values) {
      return values.filter(function (v) { return v !== null; }).length === 1 ? 4 : 0;
    };
    var line = function (label, values, color, dashed) {
      return { label: label, data: values, borderColor: color, backgroundColor: color, borderDash: dashed ? [6, 4] : [],
        pointRadius: lonePoint(values), pointHitRadius: 8, borderWidth: 2, spanGaps: true, tension: 0.2 };
    };
    draw("chart-latency", {
      type: "line",
      data: {
        labels: data.labels,
        datasets: [
          line("time to first token p50", lat.ttft_p50, "#1565c0", false),
          line("time to first token p95", lat.ttft_p95, "#1565c0", true),
          line("total latency p50", lat.latency_p50, "#ef6c00", false),
          line("total latency p95", lat.latency_p95, "#ef6c00", true)
        ]
      },
      options: { interaction: { mode: "index", intersect: false }, scales: { x: timeAxis, y: { beginAtZero: true } } }
    }, flat([lat.ttft_p50, lat.ttft_p95, lat.latency_p50, lat.latency_p95]));

    var acc = data.accounts;
    draw("chart-accounts", {
      type: "bar",
      data: {
        labels: acc.labels,
        datasets: [
          { type: "line", label: "limit", data: acc.limit, showLine: false, pointRadius: 0, pointHitRadius: 12,
            borderColor: "#c62828", backgroundColor: "#c62828", order: 0 },
          { label: "turns used", data: acc.used, order: 1, backgroundColor: acc.used.map(function (u, i) {
            return u >= acc.limit[i] ? "#c62828" : (u >= 0.7 * acc.limit[i] ? "#ef6c00" : "#2e7d32");
          }) }
        ]
      },
      options: { scales: { y: { beginAtZero: true, suggestedMax: Math.max.apply(null, acc.limit.concat([1])) * 1.1 } } },
      plugins: [limitMarks]
    }, acc.limit);

    horizontalBars("chart-errors", data.errors, "#c62828");
    horizontalBars("chart-keys", data.keys, PALETTE[0]);
    horizontalBars("chart-models", data.models, PALETTE[4]);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var node = document.getElementById("dashboard-data");
    if (node && window.Chart) { render(JSON.parse(node.textContent)); }
    document.body.setAttribute("data-charts-ready", "1");
  });
})();
