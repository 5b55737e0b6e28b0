(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("dmx-review").textContent);
  var W = D.width, H = D.height;
  var svg = document.getElementById("overlay");
  var NS = svg.namespaceURI;
  var stage = document.getElementById("stage");
  var viewport = document.getElementById("viewport");
  var img = document.getElementById("frame");
  var tbody = document.querySelector("#bodies tbody");
  var selectedText = document.getElementById("selected");
  var jsonOut = document.getElementById("json-out");
  var CORNER_WORDS = {
    ant_sup: "anterior-superior", post_sup: "posterior-superior",
    post_inf: "posterior-inferior", ant_inf: "anterior-inferior"
  };

  // state: bodies by name {corners: [[x, y] x4], confidence, edited, added}; extra points by name
  var original = JSON.stringify({ bodies: D.bodies, extra: D.extra });
  var bodies, extra, selected = null, zoom = 1;
  // placing a body from scratch: {name, points: [[x, y] ...]}, its corners clicked in CORNERS order
  var placing = null;
  var placingText = document.getElementById("placing");
  var downloadButton = document.getElementById("download");

  function load() {
    var o = JSON.parse(original);
    bodies = {};
    o.bodies.forEach(function (b) {
      bodies[b.name] = { corners: b.corners, confidence: b.confidence, edited: false, added: false };
    });
    extra = o.extra || {};
    selected = null;
    placing = null;
  }

  // ------------------------------------------------------------------ geometry
  svg.setAttribute("viewBox", [-0.5, -0.5, W, H].join(" "));
  svg.setAttribute("preserveAspectRatio", "none");
  img.src = D.image;

  function fitScale() {
    var w = viewport.clientWidth - 2, h = viewport.clientHeight - 2;
    return Math.max(0.05, Math.min(w / W, h / H));
  }
  function scale() { return fitScale() * zoom; }
  function layout() {
    var s = scale();
    stage.style.width = (W * s) + "px";
    stage.style.height = (H * s) + "px";
    document.getElementById("zoom-label").textContent = zoom === 1 ? "fit" : Math.round(zoom * 100) + " %";
    draw();
  }
  function toImage(evt) {
    var p = svg.createSVGPoint();
    p.x = evt.clientX;
    p.y = evt.clientY;
    var q = p.matrixTransform(svg.getScreenCTM().inverse());
    return [q.x, q.y];
  }
  function clamp(p) {
    return [Math.min(Math.max(p[0], -0.5), W - 0.5), Math.min(Math.max(p[1], -0.5), H - 0.5)];
  }
  function isLow(b) { return b.confidence !== null && b.confidence !== undefined && b.confidence < D.low_confidence && !b.edited; }

  // ------------------------------------------------------------------ drawing
  function el(name, attrs) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function draw() {
    var s = scale();
    var r = 7 / s, sw = 1.6 / s, font = 15 / s;
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    D.order.forEach(function (name) {
      var b = bodies[name];
      if (!b) { return; }
      var state = b.edited ? " edited" : isLow(b) ? " low" : "";
      var poly = el("polygon", {
        "class": "body-poly" + state + (selected && selected.body === name && selected.k === null ? " selected-body" : ""),
        points: b.corners.map(function (c) { return c[0] + "," + c[1]; }).join(" "),
        "stroke-width": sw, "data-v": name
      });
      poly.addEventListener("pointerdown", function (evt) { startDrag(evt, name, null); });
      svg.appendChild(poly);
      var cx = 0, cy = 0;
      b.corners.forEach(function (c) { cx += c[0] / 4; cy += c[1] / 4; });
      var label = el("text", {
        "class": "vlabel" + (isLow(b) ? " low" : ""), x: cx, y: cy + font * 0.35,
        "font-size": font, "text-anchor": "middle", "stroke-width": 3 / s
      });
      label.textContent = name + (isLow(b) ? " " + b.confidence.toFixed(2) + "?" : "");
      svg.appendChild(label);
      b.corners.forEach(function (c, k) {
        var isSel = selected && selected.body === name && selected.k === k;
        var h = el("circle", {
          "class": "handle" + state + (isSel ? " selected" : ""), cx: c[0], cy: c[1], r: r,
          "stroke-width": sw, tabindex: "0", "data-v": name, "data-k": D.corners[k],
          "aria-label": name + " " + CORNER_WORDS[D.corners[k]]
        });
        h.addEventListener("pointerdown", function (evt) { startDrag(evt, name, k); });
        h.addEventListener("focus", function () {
          if (!dragging && !(selected && selected.body === name && selected.k === k)) { select(name, k, false); }
        });
        svg.appendChild(h);
      });
    });
    Object.keys(extra).forEach(function (name, i) {
      var p = extra[name];
      var isSel = selected && selected.extra === name;
      var h = el("circle", {
        "class": "handle extra" + (isSel ? " selected" : ""), cx: p[0], cy: p[1], r: r * 0.8,
        "stroke-width": sw, tabindex: "0", "data-extra": name, "aria-label": name
      });
      h.addEventListener("pointerdown", function (evt) { startDrag(evt, name, "extra"); });
      svg.appendChild(h);
      var t = el("text", {
        // stacked, one line per point: C1.arch_post and C2.dens_ant lie a few pixels apart
        "class": "vlabel extra", x: p[0] + r * 1.3, y: p[1] - r * 1.3 - i * font * 0.9, "font-size": font * 0.7,
        "stroke-width": 3 / s
      });
      t.textContent = name;
      svg.appendChild(t);
    });
    if (placing) {
      if (placing.points.length > 1) {
        svg.appendChild(el("polyline", {
          "class": "placing-line", points: placing.points.map(function (c) { return c[0] + "," + c[1]; }).join(" "),
          "stroke-width": sw
        }));
      }
      placing.points.forEach(function (c, k) {
        svg.appendChild(el("circle", {
          "class": "placed", cx: c[0], cy: c[1], r: r * 0.7, "stroke-width": sw, "data-k": D.corners[k]
        }));
      });
    }
    document.body.classList.toggle("placing", !!placing);
    placingText.hidden = !placing;
    if (placing) {
      var n = placing.points.length;
      placingText.textContent = "Placing " + placing.name + ": click its " + CORNER_WORDS[D.corners[n]] +
        " corner (" + (n + 1) + " of 4; anterior = the side the patient faces). Esc cancels.";
    }
    downloadButton.disabled = Object.keys(bodies).length === 0;
    downloadButton.title = downloadButton.disabled ? "place at least one body first" : "";
    document.body.classList.toggle("hide-labels", !document.getElementById("show-labels").checked);
    if (selected) {
      var f = selected.extra ? svg.querySelector('[data-extra="' + selected.extra + '"]')
        : selected.k !== null ? svg.querySelector('circle[data-v="' + selected.body + '"][data-k="' + D.corners[selected.k] + '"]') : null;
      if (f && document.activeElement !== f && selected.focus) { f.focus({ preventScroll: true }); }
    }
    describe();
    table();
    jsonOut.value = JSON.stringify(result(), null, 2);
  }
  function describe() {
    if (!selected) { selectedText.textContent = "No corner selected."; return; }
    var p = selected.extra ? extra[selected.extra]
      : selected.k === null ? null : bodies[selected.body].corners[selected.k];
    var what = selected.extra ? selected.extra
      : selected.k === null ? selected.body + " (whole body)" : selected.body + " " + CORNER_WORDS[D.corners[selected.k]];
    selectedText.textContent = what + (p ? ": x " + p[0].toFixed(2) + ", y " + p[1].toFixed(2) + " px" : "");
  }
  function table() {
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    D.order.forEach(function (name) {
      var b = bodies[name];
      if (!b && !(name in D.missing)) { return; }
      var tr = document.createElement("tr");
      tr.setAttribute("data-v", name);
      var conf = b && b.confidence !== null && b.confidence !== undefined && !b.edited ? b.confidence.toFixed(2) : "—";
      var state = !b ? "not found: " + D.missing[name] : b.added ? "added by hand" : b.edited ? "edited" : isLow(b) ? "low confidence: check" : "found";
      tr.className = !b ? "missing" : isLow(b) ? "low" : "";
      [name, conf, state].forEach(function (t) {
        var td = document.createElement("td");
        td.textContent = t;
        tr.appendChild(td);
      });
      var td = document.createElement("td");
      var btn = document.createElement("button");
      btn.type = "button";
      if (!b) {
        var place = document.createElement("button");
        place.type = "button";
        place.textContent = placing && placing.name === name ? "Placing…" : "Place";
        place.className = "place";
        place.title = "click its four corners on the image, in the order asked";
        place.addEventListener("click", function () { startPlacing(name); });
        td.appendChild(place);
        btn.textContent = "Add";
        btn.className = "add";
        btn.title = "drop an outline, then drag it and its corners into place";
        btn.addEventListener("click", function () { add(name); });
      } else if (b.added) {
        btn.textContent = "Remove";
        btn.className = "remove";
        btn.addEventListener("click", function () { delete bodies[name]; selected = null; draw(); });
      }
      if (btn.textContent) { td.appendChild(btn); }
      tr.appendChild(td);
      tbody.appendChild(tr);
    });
  }

  // ------------------------------------------------------------------ adding a body not found
  function centre(c) {
    var x = 0, y = 0;
    c.forEach(function (p) { x += p[0] / 4; y += p[1] / 4; });
    return [x, y];
  }
  function shifted(c, dx, dy) { return c.map(function (p) { return clamp([p[0] + dx, p[1] + dy]); }); }
  function add(name) {
    var i = D.order.indexOf(name);
    var above = null, below = null, k;
    for (k = i - 1; k >= 0; k--) { if (bodies[D.order[k]]) { above = k; break; } }
    for (k = i + 1; k < D.order.length; k++) { if (bodies[D.order[k]]) { below = k; break; } }
    var corners;
    if (above !== null && below !== null) {  // interpolate between the nearest found neighbours
      var a = bodies[D.order[above]].corners, b = bodies[D.order[below]].corners, t = (i - above) / (below - above);
      corners = a.map(function (p, j) { return [p[0] + t * (b[j][0] - p[0]), p[1] + t * (b[j][1] - p[1])]; });
    } else if (above !== null || below !== null) {  // one body-spacing beyond the nearest found body
      var n = above !== null ? above : below, c = bodies[D.order[n]].corners;
      var step = null;
      var m = above !== null ? n - 1 : n + 1;
      if (m >= 0 && m < D.order.length && bodies[D.order[m]]) {
        var c0 = centre(c), c1 = centre(bodies[D.order[m]].corners);
        step = [c0[0] - c1[0], c0[1] - c1[1]];
      } else {
        var hgt = Math.hypot(c[1][0] - c[2][0], c[1][1] - c[2][1]) * 1.3;
        step = [0, above !== null ? hgt : -hgt];
      }
      var times = Math.abs(i - n);
      corners = shifted(c, step[0] * times, step[1] * times);
    } else {
      var s = Math.min(W, H) / 12, cx = (W - 1) / 2, cy = (H - 1) / 2;
      corners = [[cx + s, cy - s / 2], [cx - s, cy - s / 2], [cx - s, cy + s / 2], [cx + s, cy + s / 2]];
    }
    bodies[name] = { corners: corners.map(clamp), confidence: null, edited: true, added: true };
    selected = { body: name, k: null };
    draw();
  }

  // ------------------------------------------------------------------ placing a body from scratch
  function startPlacing(name) {
    placing = { name: name, points: [] };
    selected = null;
    draw();
  }
  // capture phase: while placing, a click on the image places the next corner (not a drag)
  svg.addEventListener("pointerdown", function (evt) {
    if (!placing || (evt.button !== undefined && evt.button !== 0)) { return; }
    evt.preventDefault();
    evt.stopPropagation();
    placing.points.push(clamp(toImage(evt)));
    if (placing.points.length === 4) {
      bodies[placing.name] = { corners: placing.points, confidence: null, edited: true, added: true };
      selected = { body: placing.name, k: null };
      placing = null;
    }
    draw();
  }, true);

  // ------------------------------------------------------------------ dragging and keys
  var dragging = null;
  function select(name, k, focus) {
    selected = k === "extra" ? { extra: name, focus: focus } : { body: name, k: k, focus: focus };
    draw();
  }
  function pointsOf(name, k) {
    if (k === "extra") { return [extra[name]]; }
    return k === null ? bodies[name].corners : [bodies[name].corners[k]];
  }
  function startDrag(evt, name, k) {
    if (evt.button !== undefined && evt.button !== 0) { return; }
    evt.preventDefault();
    evt.stopPropagation();
    var start = toImage(evt);
    var pts = pointsOf(name, k).map(function (p) { return p.slice(); });
    dragging = { name: name, k: k, start: start, pts: pts, id: evt.pointerId, moved: false };
    select(name, k, true);
    svg.setPointerCapture(evt.pointerId);
  }
  svg.addEventListener("pointermove", function (evt) {
    if (!dragging || evt.pointerId !== dragging.id) { return; }
    evt.preventDefault();
    var p = toImage(evt);
    var dx = p[0] - dragging.start[0], dy = p[1] - dragging.start[1];
    if (!dragging.moved && Math.abs(dx) + Math.abs(dy) < 1e-9) { return; }
    dragging.moved = true;
    move(dragging.name, dragging.k, dragging.pts, dx, dy);
  });
  function endDrag(evt) {
    if (!dragging || evt.pointerId !== dragging.id) { return; }
    if (svg.hasPointerCapture(evt.pointerId)) { svg.releasePointerCapture(evt.pointerId); }
    dragging = null;
    draw();
  }
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", endDrag);
  function move(name, k, from, dx, dy) {
    var target = pointsOf(name, k);
    from.forEach(function (p, j) {
      var q = clamp([p[0] + dx, p[1] + dy]);
      target[j][0] = q[0];
      target[j][1] = q[1];
    });
    if (k !== "extra") { bodies[name].edited = true; }
    draw();
  }
  document.addEventListener("keydown", function (evt) {
    if (placing && evt.key === "Escape") { placing = null; draw(); return; }
    if (!selected || ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].indexOf(evt.key) < 0) { return; }
    if (evt.target && evt.target.tagName && /^(INPUT|SELECT|TEXTAREA)$/.test(evt.target.tagName)) { return; }
    evt.preventDefault();
    var step = evt.shiftKey ? 10 : evt.altKey ? 0.25 : 1;
    var dx = evt.key === "ArrowLeft" ? -step : evt.key === "ArrowRight" ? step : 0;
    var dy = evt.key === "ArrowUp" ? -step : evt.key === "ArrowDown" ? step : 0;
    var name = selected.extra || selected.body, k = selected.extra ? "extra" : selected.k;
    var from = pointsOf(name, k).map(function (p) { return p.slice(); });
    selected.focus = true;
    move(name, k, from, dx, dy);
  });

  // ------------------------------------------------------------------ the corrected file
  function round(v) { return Math.round(v * 1000) / 1000; }
  function result() {
    var points = {}, confidence = {};
    D.order.forEach(function (name) {
      var b = bodies[name];
      if (!b) { return; }
      points[name] = {};
      D.corners.forEach(function (c, k) { points[name][c] = [round(b.corners[k][0]), round(b.corners[k][1])]; });
      if (!b.edited && b.confidence !== null && b.confidence !== undefined) { confidence[name] = b.confidence; }
    });
    Object.keys(extra).forEach(function (full) {
      var parts = full.split(".");
      points[parts[0]] = points[parts[0]] || {};
      points[parts[0]][parts[1]] = [round(extra[full][0]), round(extra[full][1])];
    });
    var out = { schema: D.schema, frame: D.frame, points: points };
    if (Object.keys(confidence).length) { out.confidence = confidence; }
    return out;
  }
  downloadButton.addEventListener("click", function () {
    if (!Object.keys(bodies).length) { return; }
    // a data: link (no object URL): the page never refers to anything outside itself
    var a = document.createElement("a");
    a.href = "data:application/json;charset=utf-8," + encodeURIComponent(JSON.stringify(result(), null, 2) + "\n");
    a.download = D.file_name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  });

  // ------------------------------------------------------------------ view controls
  function setZoom(z, keepCentre) {
    var cx = (viewport.scrollLeft + viewport.clientWidth / 2) / stage.offsetWidth;
    var cy = (viewport.scrollTop + viewport.clientHeight / 2) / stage.offsetHeight;
    zoom = Math.min(16, Math.max(1, z));
    layout();
    if (keepCentre) {
      viewport.scrollLeft = cx * stage.offsetWidth - viewport.clientWidth / 2;
      viewport.scrollTop = cy * stage.offsetHeight - viewport.clientHeight / 2;
    }
  }
  document.getElementById("zoom-in").addEventListener("click", function () { setZoom(zoom * 1.5, true); });
  document.getElementById("zoom-out").addEventListener("click", function () { setZoom(zoom / 1.5, true); });
  document.getElementById("zoom-fit").addEventListener("click", function () { setZoom(1, false); });
  function filter() {
    img.style.filter = "brightness(" + document.getElementById("brightness").value + ") contrast(" +
      document.getElementById("contrast").value + ")";
  }
  document.getElementById("brightness").addEventListener("input", filter);
  document.getElementById("contrast").addEventListener("input", filter);
  document.getElementById("show-labels").addEventListener("change", draw);
  document.getElementById("reset").addEventListener("click", function () { load(); draw(); });
  window.addEventListener("resize", layout);

  load();
  layout();
  window.dmxReview = { result: result, scale: scale };
})();
