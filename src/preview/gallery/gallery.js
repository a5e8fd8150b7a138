// letterpress gallery: lists the letters of window.LETTERPRESS (manifest.js)
// in a virtual list (only the rows in view exist in the DOM, so 10,000
// letters cost no more than 20), filters them, and shows the selected one.
// The selection, width, filter and language live in the URL fragment, so a reload
// (`letterpress serve` reloads on every change) keeps them.
(function () {
  "use strict";
  var ROW = 60; // px, must match .row height in gallery.css
  var data = window.LETTERPRESS;
  var live = window.LETTERPRESS_LIVE;
  var $ = function (id) { return document.getElementById(id); };
  var list = $("list"), spacer = $("spacer"), rows = $("rows");
  var errorBox = $("error");

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function kb(n) { return n == null ? "" : (n / 1024).toFixed(1) + " KB"; }

  if (live && live.error) {
    errorBox.textContent = live.error;
    errorBox.hidden = false;
    document.body.classList.add("stale");
  }
  if (!data) {
    if (!live || !live.error) {
      errorBox.textContent = "manifest.js is missing or broken: render again with --format index.";
      errorBox.hidden = false;
    }
    data = { letters: [] };
  }
  var letters = data.letters;
  $("campaign").textContent = [data.template, data.recipients].filter(Boolean).join(" × ");
  if (data.summary) {
    // Warnings counted here: the list adds check's duplicate-address ones.
    var s = data.summary, nw = 0;
    data.letters.forEach(function (l) { nw += (l.warnings || []).length; });
    $("summary").textContent = s.rendered + " letters, " + s.rejected + " rejected, " +
      nw + " warnings" + (data.deterministic ? " (deterministic)" : "");
  }

  // What the filter searches, built once.
  var haystack = letters.map(function (l) {
    return [l.row, l.name, l.to, l.subject, (l.warnings || []).join(" "), l.rejected]
      .join("\u0001").toLowerCase();
  });

  // The languages present, with their counts, for the language menu: shown
  // when there is more than one (letters of no known language count as one).
  var NO_LANG = "-";
  var langCounts = {};
  letters.forEach(function (l) {
    var k = l.lang || NO_LANG;
    langCounts[k] = (langCounts[k] || 0) + 1;
  });
  var langs = Object.keys(langCounts).sort(function (a, b) {
    return a === NO_LANG ? 1 : b === NO_LANG ? -1 : a < b ? -1 : a > b ? 1 : 0;
  });
  langs.forEach(function (k) {
    var o = document.createElement("option");
    o.value = k;
    o.textContent = (k === NO_LANG ? "no language" : k) + " (" + langCounts[k] + ")";
    $("lang").appendChild(o);
  });
  $("lang").hidden = langs.length < 2;

  // `lang:he` in the filter: the letter's language is he, or he-IL and
  // the like under it.
  function langMatches(l, want) {
    var have = (l.lang || "").toLowerCase();
    return have === want || have.indexOf(want + "-") === 0;
  }

  var shown = [];   // indices into letters, after the filter
  var selected = -1; // index into letters

  // A hand-edited address can hold a malformed `%` escape, which makes
  // decodeURIComponent throw and would leave the page empty: keep the raw text.
  function decodeHashValue(v) {
    try {
      return decodeURIComponent(v);
    } catch (e) {
      return v;
    }
  }
  function readHash() {
    var h = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) h[kv.slice(0, i)] = decodeHashValue(kv.slice(i + 1));
    });
    return h;
  }
  function writeHash() {
    var parts = [];
    if (selected >= 0) parts.push("row=" + letters[selected].row);
    parts.push("w=" + width);
    if ($("filter").value) parts.push("q=" + encodeURIComponent($("filter").value));
    if ($("only-warnings").checked) parts.push("warn=1");
    if ($("lang").value) parts.push("lang=" + encodeURIComponent($("lang").value));
    history.replaceState(null, "", "#" + parts.join("&"));
  }

  function applyFilter() {
    var terms = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    var warnOnly = $("only-warnings").checked;
    var lang = $("lang").value;
    shown = [];
    for (var i = 0; i < letters.length; i++) {
      if (warnOnly && !(letters[i].warnings && letters[i].warnings.length) && !letters[i].rejected) continue;
      if (lang && (letters[i].lang || NO_LANG) !== lang) continue;
      var h = haystack[i], ok = true;
      for (var t = 0; t < terms.length && ok; t++) {
        ok = terms[t].indexOf("lang:") === 0
          ? langMatches(letters[i], terms[t].slice(5)) : h.indexOf(terms[t]) >= 0;
      }
      if (ok) shown.push(i);
    }
    $("count").textContent = shown.length === letters.length
      ? letters.length + " letters" : shown.length + " of " + letters.length + " letters";
    spacer.style.height = shown.length * ROW + "px";
    list.scrollTop = Math.min(list.scrollTop, Math.max(0, shown.length * ROW - list.clientHeight));
    draw();
  }

  function rowHtml(pos) {
    var i = shown[pos], l = letters[i];
    var cls = "row" + (i === selected ? " sel" : "") + (l.rejected ? " rejected" : "");
    var nw = (l.warnings || []).length;
    var size = l.sizes ? (l.sizes.eml || l.sizes.html || l.sizes.txt) : null;
    var badge = l.lang ? '<span class="lang" title="' +
      esc("language: " + l.lang + (l.fallback ? " (asked for " + l.fallback + ", which has no variant)" : "")) +
      '">' + esc(l.lang) + "</span>" : "";
    var top = '<div class="l1"><span class="n">' + l.row + '</span><span class="name" dir="auto">' +
      esc(l.rejected ? "rejected row" : (l.name || l.to)) + "</span>" + badge +
      '<span class="size">' + kb(size) + "</span></div>";
    var mid = '<div class="l2"><span class="addr">' + esc(l.rejected ? "line " + l.line : l.to) + "</span>" +
      (nw ? '<span class="warn" title="' + esc(l.warnings.join("\n")) + '">⚠ ' + nw + "</span>" : "") + "</div>";
    var bot = '<div class="l3"><span class="subj" dir="auto">' + esc(l.rejected || l.subject) + "</span></div>";
    return '<div class="' + cls + '" role="option" data-i="' + i + '" style="top:' + pos * ROW + 'px">' +
      top + mid + bot + "</div>";
  }

  function draw() {
    var first = Math.max(0, Math.floor(list.scrollTop / ROW) - 5);
    var last = Math.min(shown.length, Math.ceil((list.scrollTop + list.clientHeight) / ROW) + 5);
    var html = "";
    for (var p = first; p < last; p++) html += rowHtml(p);
    rows.innerHTML = html;
  }
  var queued = false;
  list.addEventListener("scroll", function () {
    if (queued) return;
    queued = true;
    requestAnimationFrame(function () { queued = false; draw(); });
  });
  window.addEventListener("resize", draw);

  var width = 600;
  // The letter gets the full width; the frame adds room for a classic
  // 15 px scrollbar, which phones and most mail apps do not take from it.
  var SCROLLBAR = 15;
  function setWidth(w) {
    width = w === 375 ? 375 : 600;
    $("html").style.width = width + SCROLLBAR + "px";
    $("w-phone").setAttribute("aria-pressed", String(width === 375));
    $("w-desktop").setAttribute("aria-pressed", String(width === 600));
  }

  function show(i) {
    selected = i;
    var l = letters[i];
    $("empty").hidden = true;
    $("letter").hidden = false;
    var t = $("headers");
    t.innerHTML = "";
    (l.headers || []).forEach(function (h) {
      var tr = t.insertRow();
      var th = document.createElement("th");
      th.textContent = h[0];
      tr.appendChild(th);
      // A Hebrew subject or name reads in its own direction.
      var td = tr.insertCell();
      td.dir = "auto";
      td.textContent = h[1];
    });
    if (l.rejected) {
      var tr = t.insertRow();
      tr.insertCell().textContent = "row " + l.row + ", line " + l.line;
    }
    var w = $("warnings");
    w.innerHTML = "";
    (l.rejected ? [l.rejected] : (l.warnings || [])).forEach(function (m) {
      var li = document.createElement("li");
      li.textContent = m;
      if (l.rejected) li.className = "rejected";
      w.appendChild(li);
    });
    var files = l.files || {};
    $("text-dir").hidden = true;
    $("text-copy").hidden = true;
    ["html", "text"].forEach(function (kind) {
      var f = files[kind === "text" ? "txt" : "html"];
      var frame = $(kind);
      frame.parentNode.hidden = !f;
      $(kind + "-missing").hidden = !!f || !!l.rejected;
      if (f) {
        if (frame.getAttribute("src") !== f) frame.setAttribute("src", f);
        else if (kind === "text" && frame.getAttribute("data-loaded") === f) textDirection(frame);
      }
      else frame.removeAttribute("src");
    });
    $("links").innerHTML = ["eml", "html", "txt"].filter(function (k) { return files[k]; })
      .map(function (k) {
        return '<a href="' + esc(files[k]) + '" target="_blank" rel="noopener">' + esc(files[k]) + "</a>";
      }).join("");
    var a = $("attachments");
    a.innerHTML = (l.attachments || []).map(function (f) {
      return '<li' + (f.inline ? ' class="inline"' : "") + '><a href="' + esc(f.href) +
        '" target="_blank" rel="noopener">' + esc(f.name) + "</a> <span>" + esc(f.type) +
        ", " + kb(f.size) + (f.inline ? ", shown in the letter" : "") + "</span></li>";
    }).join("");
    a.hidden = !(l.attachments || []).length;
    writeHash();
    draw();
  }

  function kb(n) {
    return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KB" : (n / 1048576).toFixed(1) + " MB";
  }

  function move(step) {
    var pos = shown.indexOf(selected) + step;
    if (pos < 0 || pos >= shown.length) return;
    show(shown[pos]);
    var top = pos * ROW;
    if (top < list.scrollTop) list.scrollTop = top;
    else if (top + ROW > list.scrollTop + list.clientHeight) list.scrollTop = top + ROW - list.clientHeight;
  }

  // Which file each frame has finished loading (tests and people waiting on
  // a slow letter can tell).
  // The text part is a plain .txt, which a browser shows left to right:
  // a right-to-left letter's is turned around when the page may reach it
  // (served over HTTP); from file:// the page shows the copy `render` put
  // in manifest.js instead, or, without one, a note.
  function textDirection(frame) {
    var src = frame.getAttribute("src") || "";
    var l = selected >= 0 ? letters[selected] : null;
    if (!l || !l.files || l.files.txt !== src) return;
    var doc = null;
    try { doc = frame.contentDocument; } catch (e) { doc = null; }
    var dir = l.dir === "rtl" ? "rtl" : "ltr";
    var copy = $("text-copy");
    if (doc && doc.documentElement) {
      doc.documentElement.dir = dir;
      if (l.lang) doc.documentElement.lang = l.lang;
      frame.setAttribute("data-dir", dir);
    } else if (dir === "rtl" && l.text != null) {
      copy.textContent = l.text;
      copy.dir = "rtl";
      copy.lang = l.lang || "";
      copy.hidden = false;
      frame.parentNode.hidden = true;
      frame.setAttribute("data-dir", "rtl");
    } else {
      frame.setAttribute("data-dir", "unknown");
    }
    $("text-dir").hidden = !(dir === "rtl" && frame.getAttribute("data-dir") === "unknown");
  }
  ["html", "text"].forEach(function (id) {
    $(id).addEventListener("load", function () {
      if (id === "text") textDirection(this);
      this.setAttribute("data-loaded", this.getAttribute("src") || "");
    });
  });

  rows.addEventListener("click", function (e) {
    var r = e.target.closest(".row");
    if (r) { show(+r.getAttribute("data-i")); list.focus(); }
  });
  list.addEventListener("keydown", function (e) {
    if (e.key === "ArrowDown" || e.key === "j") { move(1); e.preventDefault(); }
    if (e.key === "ArrowUp" || e.key === "k") { move(-1); e.preventDefault(); }
  });
  $("filter").addEventListener("input", function () { applyFilter(); writeHash(); });
  $("only-warnings").addEventListener("change", function () { applyFilter(); writeHash(); });
  $("lang").addEventListener("change", function () { applyFilter(); writeHash(); });
  $("w-phone").addEventListener("click", function () { setWidth(375); writeHash(); });
  $("w-desktop").addEventListener("click", function () { setWidth(600); writeHash(); });

  // Start from the URL fragment: #row=N&w=375&q=text&warn=1&lang=he
  var h = readHash();
  if (h.q) $("filter").value = h.q;
  if (h.lang && langCounts[h.lang]) $("lang").value = h.lang;
  if (h.warn) $("only-warnings").checked = true;
  setWidth(+h.w || 600);
  applyFilter();
  var want = -1;
  for (var i = 0; h.row && i < letters.length; i++) if (String(letters[i].row) === h.row) { want = i; break; }
  if (want < 0 && shown.length) want = shown[0];
  if (want >= 0) {
    show(want);
    var pos = shown.indexOf(want);
    if (pos >= 0) list.scrollTop = Math.max(0, pos * ROW - list.clientHeight / 2);
  }

  // `letterpress serve`: wait for the next render, then reload.
  if (live) {
    var poll = function () {
      fetch("/__letterpress/wait?v=" + live.version, { cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (s) { if (s.version !== live.version) location.reload(); else poll(); })
        .catch(function () { setTimeout(poll, 1000); });
    };
    poll();
  }
  window.letterpressGallery = { show: show, shown: function () { return shown.slice(); } };
})();
