(function () {
  "use strict";
  /* The cine player and the plot cursors. Data comes from the JSON block #dmx-data. */
  var DATA = JSON.parse(document.getElementById("dmx-data").textContent);
  var C = DATA.cine;
  var times = DATA.times;
  var current = 0;

  function moveCursors(frame) {
    var t0 = times[0], t1 = times[times.length - 1];
    var u = t1 > t0 ? (times[frame] - t0) / (t1 - t0) : 0;
    var lines = document.querySelectorAll("svg.plot line.cursor");
    for (var i = 0; i < lines.length; i++) {
      var x0 = parseFloat(lines[i].getAttribute("data-x0"));
      var x1 = parseFloat(lines[i].getAttribute("data-x1"));
      var x = x0 + (x1 - x0) * u;
      lines[i].setAttribute("x1", x.toFixed(1));
      lines[i].setAttribute("x2", x.toFixed(1));
    }
    Object.keys(DATA.loops).forEach(function (id) {
      var svg = document.getElementById(id);
      if (!svg) { return; }
      var dot = svg.querySelector(".cursor-dot");
      var p = DATA.loops[id][frame];
      if (p) {
        dot.setAttribute("cx", p[0]);
        dot.setAttribute("cy", p[1]);
        dot.style.display = "";
      } else {
        dot.style.display = "none";
      }
    });
  }

  if (!C) {
    moveCursors(0);
    return;
  }

  var n = C.frames.length;
  var cine = document.getElementById("cine");
  var stable = document.getElementById("stable");
  var scrub = document.getElementById("scrub");
  var counter = document.getElementById("frame-counter");
  var timeCounter = document.getElementById("time-counter");
  var playButton = document.getElementById("play");
  var speed = document.getElementById("speed");
  var select = document.getElementById("stabilise");
  var showCorners = document.getElementById("show-corners");
  var note = document.getElementById("stable-note");
  var cctx = cine.getContext("2d");
  var sctx = stable.getContext("2d");
  cine.width = stable.width = C.width;
  cine.height = stable.height = C.height;
  scrub.max = String(n - 1);

  var imgs = new Array(n);
  function image(k) {
    if (!imgs[k]) {
      imgs[k] = new Image();
      imgs[k].onload = function () { if (k === current) { draw(); } };
      imgs[k].src = C.frames[k];
    }
    return imgs[k];
  }
  var preloadNext = 0;
  function preload() {
    var until = Math.min(n, preloadNext + 20);
    for (; preloadNext < until; preloadNext++) { image(preloadNext); }
    if (preloadNext < n) { setTimeout(preload, 30); }
  }

  C.vertebrae.forEach(function (name, v) {
    var opt = document.createElement("option");
    opt.value = String(v);
    opt.textContent = name;
    select.appendChild(opt);
  });
  var defaultV = C.vertebrae.indexOf("C5");
  select.value = String(defaultV >= 0 ? defaultV : Math.floor(C.vertebrae.length / 2));

  function colourFor(q) {
    if (q === null || q === undefined) { return "#9aa5b1"; }
    return q < C.low_quality ? "#f2a900" : "#3df08a";
  }

  function drawCorners(ctx, k, lineScale) {
    var row = C.corners[k];
    var qrow = C.quality[k];
    ctx.lineWidth = 1.4 * lineScale;
    ctx.font = "bold " + Math.round(11 * lineScale) + "px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (var v = 0; v < row.length; v++) {
      var c = row[v];
      if (!c) { continue; }
      var col = colourFor(qrow[v]);
      ctx.strokeStyle = col;
      ctx.beginPath();
      ctx.moveTo(c[0], c[1]);
      ctx.lineTo(c[2], c[3]);
      ctx.lineTo(c[4], c[5]);
      ctx.lineTo(c[6], c[7]);
      ctx.closePath();
      ctx.stroke();
      ctx.fillStyle = col;
      for (var j = 0; j < 8; j += 2) {
        ctx.beginPath();
        ctx.arc(c[j], c[j + 1], 2 * lineScale, 0, 2 * Math.PI);
        ctx.fill();
      }
      var cx = (c[0] + c[2] + c[4] + c[6]) / 4, cy = (c[1] + c[3] + c[5] + c[7]) / 4;
      ctx.lineWidth = 3 * lineScale;
      ctx.strokeStyle = "#000";
      ctx.strokeText(C.vertebrae[v], cx, cy);
      ctx.fillStyle = "#fff";
      ctx.fillText(C.vertebrae[v], cx, cy);
      ctx.lineWidth = 1.4 * lineScale;
    }
  }

  function invert(m) {
    /* m = [a, b, c, d, e, f]: x' = a x + c y + e, y' = b x + d y + f */
    var det = m[0] * m[3] - m[2] * m[1];
    if (!det) { return null; }
    var a = m[3] / det, b = -m[1] / det, c = -m[2] / det, d = m[0] / det;
    return [a, b, c, d, -(a * m[4] + c * m[5]), -(b * m[4] + d * m[5])];
  }

  function draw() {
    var k = current;
    var img = image(k);
    var lineScale = Math.max(1, C.width / 420);
    cctx.setTransform(1, 0, 0, 1, 0, 0);
    cctx.fillStyle = "#000";
    cctx.fillRect(0, 0, C.width, C.height);
    if (img.complete && img.naturalWidth) { cctx.drawImage(img, 0, 0, C.width, C.height); }
    if (showCorners.checked) { drawCorners(cctx, k, lineScale); }

    var v = parseInt(select.value, 10);
    var m = C.transforms[k][v];
    var inv = m ? invert(m) : null;
    sctx.setTransform(1, 0, 0, 1, 0, 0);
    sctx.fillStyle = "#000";
    sctx.fillRect(0, 0, C.width, C.height);
    if (inv) {
      sctx.setTransform(inv[0], inv[1], inv[2], inv[3], inv[4], inv[5]);
      note.textContent = "";
    } else {
      note.textContent = C.vertebrae[v] + " not tracked in this frame: shown as acquired";
    }
    if (img.complete && img.naturalWidth) { sctx.drawImage(img, 0, 0, C.width, C.height); }
    if (showCorners.checked) { drawCorners(sctx, k, lineScale); }
    sctx.setTransform(1, 0, 0, 1, 0, 0);

    var frame = C.indices[k];
    counter.textContent = "frame " + frame + " / " + (C.count - 1);
    timeCounter.textContent = DATA.time_known ? C.times[k].toFixed(2) + " s" : "frame time unknown";
    scrub.value = String(k);
    moveCursors(frame);
  }

  function show(k) {
    current = Math.max(0, Math.min(n - 1, k));
    draw();
  }

  var playing = false, lastTick = 0, timer = null;
  function step(now) {
    if (!playing) { return; }
    var rate = parseFloat(speed.value);
    /* real time when the frame times are known, else 15 frames/s */
    var next = (current + 1) % n;
    var gap = DATA.time_known ? C.times[next] - C.times[current] : (C.indices[next] - C.indices[current]) / 15;
    var dt = 1000 * gap / rate;
    if (!(dt > 0)) { dt = 1000 / 15 / rate; }
    if (now - lastTick >= dt) {
      lastTick = now;
      show((current + 1) % n);
    }
    timer = requestAnimationFrame(step);
  }
  function setPlaying(on) {
    playing = on;
    playButton.textContent = on ? "❚❚ Pause" : "▶ Play";
    playButton.setAttribute("aria-label", on ? "pause" : "play");
    if (on) {
      lastTick = performance.now();
      timer = requestAnimationFrame(step);
    } else if (timer) {
      cancelAnimationFrame(timer);
    }
  }
  playButton.addEventListener("click", function () { setPlaying(!playing); });
  scrub.addEventListener("input", function () { show(parseInt(scrub.value, 10)); });
  select.addEventListener("change", draw);
  showCorners.addEventListener("change", draw);
  var jumps = document.querySelectorAll("button.jump");
  for (var i = 0; i < jumps.length; i++) {
    jumps[i].addEventListener("click", function (ev) {
      var want = DATA.keys ? DATA.keys[ev.currentTarget.getAttribute("data-key")] : null;
      if (want === null || want === undefined) { return; }
      var best = 0;
      for (var k = 0; k < n; k++) {
        if (Math.abs(C.indices[k] - want) < Math.abs(C.indices[best] - want)) { best = k; }
      }
      setPlaying(false);
      show(best);
    });
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.target && (ev.target.tagName === "SELECT" || ev.target.tagName === "INPUT")) { return; }
    if (ev.key === " ") { ev.preventDefault(); setPlaying(!playing); }
    if (ev.key === "ArrowRight") { setPlaying(false); show(current + 1); }
    if (ev.key === "ArrowLeft") { setPlaying(false); show(current - 1); }
  });

  show(0);
  preload();
})();
