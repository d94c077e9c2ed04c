// gotasks dashboard: confirm before acting, and keep the overview live.
"use strict";

// Retry and cancel forms ask first. The server asks again (a confirmation
// page) for a form posted without confirmed=1, as without JavaScript.
document.addEventListener("submit", function (ev) {
  var form = ev.target;
  var question = form.getAttribute("data-confirm");
  if (!question) return;
  if (!window.confirm(question)) {
    ev.preventDefault();
    return;
  }
  var c = form.querySelector('input[name="confirmed"]');
  if (c) c.value = "1";
});

// The overview polls /api/stats: the counts update in place and the chart
// plots tasks finished per second, from the differences of the totals
// every worker counts in Redis.
(function () {
  var canvas = document.getElementById("throughput");
  if (!canvas) return;
  var every = parseInt(canvas.getAttribute("data-refresh"), 10) || 2000;
  var keep = 90;
  var points = []; // {t, ok, bad} rates per second
  var last = null;
  var peak = 0; // the highest completed/s plotted, for tests and the eye

  // snapshot keeps each queue's totals: a rate is the sum of the queues'
  // own increases, so that one queue whose totals went back (its keys were
  // deleted) hides nothing of the others.
  function snapshot(s) {
    var q = {};
    s.queues.forEach(function (x) { q[x.queue] = { ok: x.completed_total, bad: x.failed_total }; });
    return { t: s.time_ms, q: q };
  }
  function increase(now, before, key) {
    var sum = 0;
    Object.keys(now.q).forEach(function (name) {
      var b = before.q[name];
      if (b) sum += Math.max(0, now.q[name][key] - b[key]);
    });
    return sum;
  }

  function age(sec) {
    if (sec <= 0) return "–";
    if (sec < 60) return sec.toFixed(1) + "s";
    if (sec < 3600) return Math.round(sec / 60) + "m";
    return Math.round(sec / 3600) + "h";
  }

  function updateTable(s) {
    s.queues.forEach(function (q) {
      var tr = document.querySelector('tr[data-queue="' + CSS.escape(q.queue) + '"]');
      if (!tr) return;
      ["pending", "deferred", "running", "failed", "completed_total", "failed_total"].forEach(function (f) {
        var cell = tr.querySelector('[data-field="' + f + '"]');
        if (cell) cell.textContent = q[f];
        if (cell && f === "failed") cell.classList.toggle("bad", q[f] > 0);
      });
      var p = tr.querySelector('[data-field="paused"]');
      if (p) p.hidden = !q.paused;
      var o = tr.querySelector('[data-field="oldest"]');
      if (o) o.textContent = age(q.oldest_pending_age_seconds);
    });
  }

  function draw() {
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = w * dpr;
    canvas.height = h * dpr;
    var g = canvas.getContext("2d");
    g.scale(dpr, dpr);
    g.clearRect(0, 0, w, h);
    var left = 48, bottom = h - 18, top = 8, right = w - 8;
    var max = 1;
    points.forEach(function (p) { max = Math.max(max, p.ok, p.bad); });
    max = niceCeil(max);
    g.strokeStyle = "#e4e7ec";
    g.fillStyle = "#667085";
    g.font = "11px system-ui, sans-serif";
    for (var i = 0; i <= 4; i++) {
      var y = bottom - (bottom - top) * i / 4;
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
      g.fillText(fmt(max * i / 4), 4, y + 4);
    }
    g.fillText("last " + Math.round(keep * every / 1000) + "s", left, h - 4);
    function line(key, color) {
      if (points.length < 2) return;
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      points.forEach(function (p, i) {
        var x = right - (points.length - 1 - i) * (right - left) / (keep - 1);
        var y = bottom - (bottom - top) * p[key] / max;
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    }
    line("ok", "#1f7a4d");
    line("bad", "#b42318");
  }

  function niceCeil(v) {
    var e = Math.pow(10, Math.floor(Math.log10(v)));
    var m = v / e;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * e;
  }
  function fmt(v) {
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + "k";
    if (v >= 10) return String(Math.round(v));
    return String(Math.round(v * 100) / 100);
  }

  function poll() {
    fetch("/api/stats", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (s) {
        updateTable(s);
        var now = snapshot(s);
        if (last && now.t > last.t) {
          var dt = (now.t - last.t) / 1000;
          points.push({ ok: increase(now, last, "ok") / dt, bad: increase(now, last, "bad") / dt });
          if (points.length > keep) points.shift();
          var p = points[points.length - 1];
          document.getElementById("rate").textContent = fmt(p.ok) + " completed/s, " + fmt(p.bad) + " failed/s";
          peak = Math.max(peak, p.ok);
          canvas.setAttribute("data-points", String(points.length));
          canvas.setAttribute("data-peak", String(peak));
        }
        last = now;
        draw();
      })
      .catch(function (e) { document.getElementById("rate").textContent = "cannot read the queues: " + e.message; })
      .finally(function () { setTimeout(poll, every); });
  }
  draw();
  poll();
})();

// The queue and task pages follow their queue's task events
// (/api/events, server-sent) and read themselves again when a task of
// theirs changes: the page's <main> is replaced, without a reload. A
// "missed" event (the server lost some) reads the page again too.
// body[data-live] says whether the stream is open, body[data-updates]
// how many times the page was read again (for tests and the eye).
(function () {
  var el = document.querySelector("[data-live-queue]");
  if (!el || !window.EventSource || !window.fetch) return;
  var id = el.getAttribute("data-live-id"); // a task page
  var src = new EventSource("/api/events?queue=" + encodeURIComponent(el.getAttribute("data-live-queue")));
  var body = document.body;
  var busy = false, again = false, last = 0;
  var gap = 1000; // a queue page reads itself at most once a second

  function refresh() {
    if (busy) { again = true; return; }
    var wait = id ? 0 : Math.max(0, last + gap - Date.now());
    busy = true;
    setTimeout(function () {
      last = Date.now();
      fetch(location.href, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
        .then(function (html) {
          var main = new DOMParser().parseFromString(html, "text/html").querySelector("main");
          var now = document.querySelector("main");
          if (!main || !now) return;
          now.innerHTML = main.innerHTML;
          body.setAttribute("data-updates", String((parseInt(body.getAttribute("data-updates"), 10) || 0) + 1));
        })
        .catch(function () {})
        .finally(function () {
          busy = false;
          if (again) { again = false; refresh(); }
        });
    }, wait);
  }

  src.addEventListener("open", function () { body.setAttribute("data-live", "on"); });
  src.addEventListener("error", function () { body.setAttribute("data-live", "off"); });
  src.addEventListener("task", function (ev) {
    var e;
    try { e = JSON.parse(ev.data); } catch (x) { return; }
    if (!id || e.id === id) refresh();
  });
  src.addEventListener("missed", refresh);
})();
