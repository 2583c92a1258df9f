// The dashboard: 12 widgets fetched concurrently, refreshed in bursts. The
// session token is an HttpOnly cookie: this script never sees it; the
// browser sends it and stores each rotated one by itself.
"use strict";
(function () {
  const WIDGETS = 12;
  const stats = { bursts: 0, requests: 0, ok: 0, unauthorized: 0, failed: 0, rotated: 0, grace: 0 };
  let running = false;

  function show() {
    for (const k of Object.keys(stats)) {
      const el = document.getElementById("s-" + k);
      if (el) el.textContent = String(stats[k]);
    }
    document.getElementById("s-unauthorized").classList.toggle("nonzero", stats.unauthorized > 0);
  }

  function spark(points) {
    const min = Math.min.apply(null, points), max = Math.max.apply(null, points);
    const span = max - min || 1;
    return points.map(function (p, i) {
      const x = (i / (points.length - 1)) * 100;
      const y = 28 - ((p - min) / span) * 26;
      return (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
    }).join(" ");
  }

  async function loadWidget(i) {
    const el = document.getElementById("w" + i);
    let r;
    try {
      r = await fetch("/api/widgets/" + i, { cache: "no-store", credentials: "same-origin" });
    } catch (_) {
      stats.failed += 1;
      el.dataset.state = "error";
      return 0;
    }
    stats.requests += 1;
    if (r.status === 401) {
      stats.unauthorized += 1;
      el.dataset.state = "error";
      return 401;
    }
    if (!r.ok) {
      stats.failed += 1;
      el.dataset.state = "error";
      return r.status;
    }
    const w = await r.json();
    stats.ok += 1;
    if (w.outcome === "rotated") stats.rotated += 1;
    if (w.outcome === "grace") stats.grace += 1;
    el.querySelector("h3").textContent = w.title;
    el.querySelector(".value").textContent = w.value;
    el.querySelector(".detail").textContent = w.detail;
    el.querySelector("path").setAttribute("d", spark(w.spark));
    el.dataset.state = "fresh";
    return 200;
  }

  // One burst: all twelve widgets at once, as a single-page app does.
  async function burst() {
    const ids = Array.from({ length: WIDGETS }, function (_, i) { return i; });
    await Promise.all(ids.map(loadWidget));
    stats.bursts += 1;
    show();
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  // Used by the "Run 20 bursts" button and by the browser test.
  async function runBursts(n, pauseMs) {
    while (running) await sleep(20);
    running = true;
    try {
      for (let i = 0; i < n; i++) {
        await burst();
        if (pauseMs) await sleep(pauseMs);
      }
    } finally {
      running = false;
    }
    return Object.assign({}, stats);
  }
  window.xemsRunBursts = runBursts;
  window.xemsStats = function () { return Object.assign({}, stats); };

  document.getElementById("burst").addEventListener("click", function () { runBursts(1, 0); });
  document.getElementById("bursts20").addEventListener("click", function () { runBursts(20, 50); });
  let timer = null;
  document.getElementById("auto").addEventListener("change", function (e) {
    if (timer) clearInterval(timer);
    timer = e.target.checked ? setInterval(function () { runBursts(1, 0); }, 3000) : null;
  });

  runBursts(1, 0);
})();
