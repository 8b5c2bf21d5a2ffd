// calib report: table sorting, the episode browser and the copy button.
// Rollout text is untrusted: it is read with JSON.parse and written with textContent only
// (this file never assigns innerHTML), so markup in a message is shown, never run.
(function () {
  "use strict";

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // ---------------------------------------------------------------- sortable tables
  // Cells carry their exact value in data-value; missing values ("") always sort last.
  function sortKey(cell, numeric) {
    var raw = cell ? cell.getAttribute("data-value") : null;
    if (raw === null || raw === "") return null;
    if (!numeric) return raw.toLowerCase();
    var v = parseFloat(raw);
    return isNaN(v) ? null : v;
  }

  function sortTable(table, col, th) {
    var numeric = th.getAttribute("data-type") === "num";
    var current = th.getAttribute("aria-sort");
    // numbers: largest first on the first click; names: A to Z first
    var dir = current ? (current === "descending" ? "ascending" : "descending") : (numeric ? "descending" : "ascending");
    var sign = dir === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, i) { return { row: row, key: sortKey(row.cells[col], numeric), i: i }; });
    keyed.sort(function (a, b) {
      if (a.key === null && b.key === null) return a.i - b.i;
      if (a.key === null) return 1;
      if (b.key === null) return -1;
      if (a.key < b.key) return -sign;
      if (a.key > b.key) return sign;
      return a.i - b.i;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortTable(table, col, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(table, col, th); }
      });
    });
  });

  // ---------------------------------------------------------------- copy button
  var copyBtn = document.getElementById("copy-spec");
  var copyStatus = document.getElementById("copy-status");
  var specPre = document.getElementById("spec-yaml");

  function selectSpec() {
    var range = document.createRange();
    range.selectNodeContents(specPre);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  function copyFallback() {
    selectSpec();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    copyStatus.textContent = ok ? "copied" : "selected: press Ctrl+C (Cmd+C) to copy";
  }

  if (copyBtn && specPre) {
    copyBtn.addEventListener("click", function () {
      var text = specPre.textContent;
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(function () { copyStatus.textContent = "copied"; }, copyFallback);
      } else {
        copyFallback();
      }
    });
  }

  // ---------------------------------------------------------------- episode browser
  var episodes = readJSON("calib-episodes") || [];
  var list = document.getElementById("ep-list");
  var detail = document.getElementById("ep-detail");
  var filterOutcome = document.getElementById("ep-filter-outcome");
  var filterTask = document.getElementById("ep-filter-task");
  var current = -1;

  function fmt(v) {
    if (v === null || v === undefined) return "n/a";
    return Number.isInteger(v) ? String(v) : v.toFixed(3);
  }

  function renderCall(call) {
    var box = el("div", "call");
    box.appendChild(el("span", "call-name", "call " + call.name));
    if (call.parse_error) box.appendChild(el("span", "cut", " (arguments did not parse)"));
    box.appendChild(el("div", "call-args", call.arguments));
    if (call.cut) box.appendChild(el("div", "cut", "... " + call.cut + " more characters cut"));
    return box;
  }

  function renderMessage(m) {
    var box = el("div", "msg role-" + String(m.role).replace(/[^a-z_]/gi, ""));
    var head = m.role + (m.name ? " (" + m.name + ")" : "");
    if (m.turn !== undefined) head += " · turn " + m.turn + (m.kind ? " · " + m.kind : "");
    if (m.invalid) head += " · invalid tool call";
    box.appendChild(el("div", "msg-role", head));
    if (m.content) box.appendChild(el("div", "msg-text", m.content));
    if (m.cut) box.appendChild(el("div", "cut", "... " + m.cut + " more characters cut"));
    (m.tool_calls || []).forEach(function (c) { box.appendChild(renderCall(c)); });
    if (m.signals) {
      var chips = el("div", "chips");
      Object.keys(m.signals).forEach(function (name) {
        var v = m.signals[name];
        chips.appendChild(el("span", v ? "chip on" : "chip", name + " " + fmt(v)));
      });
      box.appendChild(chips);
    }
    return box;
  }

  function show(i) {
    current = i;
    var ep = episodes[i];
    while (detail.firstChild) detail.removeChild(detail.firstChild);
    detail.appendChild(el("h3", null, (ep.success ? "\u2713 success" : "\u2717 failure") + " · " + ep.task_id));
    detail.appendChild(el("p", "ep-head",
      "episode " + ep.episode_id + " · run " + ep.run_id + " · iteration " + fmt(ep.iteration) +
      " · outcome " + fmt(ep.outcome) + " · " + ep.n_turns + " turns" + (ep.policy ? " · policy " + ep.policy : "") +
      (ep.status !== "ok" ? " · status " + ep.status : "")));
    ep.messages.forEach(function (m) { detail.appendChild(renderMessage(m)); });
    Array.prototype.forEach.call(list.querySelectorAll("button"), function (b) {
      b.setAttribute("aria-current", String(Number(b.getAttribute("data-index")) === i));
    });
  }

  function renderList() {
    var outcome = filterOutcome ? filterOutcome.value : "all";
    var task = filterTask ? filterTask.value.toLowerCase() : "";
    while (list.firstChild) list.removeChild(list.firstChild);
    var shown = 0;
    episodes.forEach(function (ep, i) {
      if (outcome === "success" && !ep.success) return;
      if (outcome === "failure" && ep.success) return;
      if (task && String(ep.task_id).toLowerCase().indexOf(task) < 0) return;
      var li = el("li");
      var b = el("button");
      b.type = "button";
      b.setAttribute("data-index", String(i));
      b.setAttribute("aria-current", String(i === current));
      b.appendChild(el("span", ep.success ? "mark-ok" : "mark-bad", ep.success ? "\u2713 " : "\u2717 "));
      b.appendChild(document.createTextNode(ep.task_id + " · " + ep.episode_id));
      b.addEventListener("click", function () { show(i); });
      li.appendChild(b);
      list.appendChild(li);
      shown += 1;
    });
    if (!shown) list.appendChild(el("li", "note", "no episode matches"));
  }

  if (list && detail) {
    if (filterOutcome) filterOutcome.addEventListener("change", renderList);
    if (filterTask) filterTask.addEventListener("input", renderList);
    renderList();
    if (episodes.length) show(0);
    else detail.appendChild(el("p", "note", "No episodes embedded (--max-episodes 0)."));
  }

  document.documentElement.setAttribute("data-ready", "1");
})();
