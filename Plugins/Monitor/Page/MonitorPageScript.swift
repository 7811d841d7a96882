/// The page's script: polls the overview once a second, renders the tables, and draws the rate charts itself
/// (inline SVG sparklines per MQ, a canvas chart in the detail view). After each refresh it bumps
/// `document.body.dataset.refreshes` and dispatches a `zbus:refreshed` event, which scripts and tests can wait on.
enum MonitorPageScript {
    static let text = #"""
"use strict";
(function () {
  // A token given to the page (`/?token=...`, for a node with access control) goes with every call it makes.
  const pageToken = new URLSearchParams(location.search).get("token");
  const tokenQuery = pageToken ? "token=" + encodeURIComponent(pageToken) : "";
  const overviewURL = "/monitor/api/overview" + (tokenQuery ? "?" + tokenQuery : "");
  const detailURL = "/monitor/api/mq?" + (tokenQuery ? tokenQuery + "&" : "") + "name=";
  let selected = null;
  let refreshes = 0;
  const $ = (id) => document.getElementById(id);

  function text(value) { return document.createTextNode(String(value)); }
  function cell(value, cls) { const td = document.createElement("td"); if (cls) td.className = cls; td.appendChild(text(value)); return td; }
  function rate(value) { return value >= 100 ? Math.round(value).toString() : value.toFixed(1); }
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }
  function duration(seconds) {
    seconds = Math.floor(seconds);
    const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    if (d > 0) return d + "d " + h + "h"; if (h > 0) return h + "h " + m + "m"; if (m > 0) return m + "m" + (s ? " " + s + "s" : ""); return s + "s";
  }
  function axis(value) { return value === 0 ? "0" : value >= 10 ? Math.round(value).toString() : value >= 1 ? value.toFixed(1) : value.toFixed(2); }
  function ago(ms, now) { return ms > 0 ? duration(Math.max(0, now - ms) / 1000) + " ago" : "–"; }

  function sparkline(history) {
    const ns = "http://www.w3.org/2000/svg", w = 120, h = 24;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark"); svg.setAttribute("width", w); svg.setAttribute("height", h);
    if (!history) return svg;
    const max = Math.max(1, ...history.produce, ...history.consume);
    [["produce", "#2f7ed8"], ["consume", "#2ca25f"]].forEach(([key, color]) => {
      const values = history[key]; if (values.length < 2) return;
      const step = w / (values.length - 1);
      const points = values.map((v, i) => (i * step).toFixed(1) + "," + (h - 1 - v / max * (h - 2)).toFixed(1)).join(" ");
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", points); line.setAttribute("fill", "none");
      line.setAttribute("stroke", color); line.setAttribute("stroke-width", "1.5");
      svg.appendChild(line);
    });
    return svg;
  }

  function chart(canvas, history, seconds) {
    const ratio = window.devicePixelRatio || 1, w = canvas.clientWidth || 900, h = canvas.clientHeight || 220;
    canvas.width = w * ratio; canvas.height = h * ratio;
    const g = canvas.getContext("2d"); g.scale(ratio, ratio); g.clearRect(0, 0, w, h);
    const left = 48, bottom = h - 20, top = 10, right = w - 10;
    const max = Math.max(1, ...history.produce, ...history.consume);
    g.strokeStyle = "#dde2e8"; g.fillStyle = "#6a7480"; g.font = "11px sans-serif"; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = bottom - (bottom - top) * i / 4;
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
      g.fillText(axis(max * i / 4), 4, y + 4);
    }
    g.fillText("-" + duration(seconds), left, h - 4); g.fillText("now", right - 22, h - 4);
    [["produce", "#2f7ed8"], ["consume", "#2ca25f"]].forEach(([key, color]) => {
      const values = history[key]; if (values.length < 2) return;
      const step = (right - left) / (seconds - 1), start = right - step * (values.length - 1);
      g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
      values.forEach((v, i) => { const x = start + i * step, y = bottom - v / max * (bottom - top); i ? g.lineTo(x, y) : g.moveTo(x, y); });
      g.stroke();
    });
  }

  function renderNode(data) {
    const node = data.node;
    $("node-name").textContent = node.name;
    $("node-version").textContent = node.version;
    $("node-address").textContent = node.address;
    $("node-uptime").textContent = duration(node.uptimeSeconds);
    $("node-connections").textContent = node.connections;
    $("node-store").textContent = bytes(node.storeBytes);
    $("node-mqs").textContent = data.mqs.length;
    const status = $("status");
    status.textContent = node.stopping ? "stopping" : "live";
    status.className = "status " + (node.stopping ? "down" : "ok");
  }

  function renderQueues(data) {
    const body = $("mq-rows"), rows = document.createDocumentFragment();
    if (data.mqs.length === 0) {
      const tr = document.createElement("tr"); tr.className = "empty";
      const td = cell("no MQs yet"); td.colSpan = 9; tr.appendChild(td); rows.appendChild(tr);
    }
    data.mqs.forEach((mq) => {
      const tr = document.createElement("tr");
      tr.className = "mq" + (mq.name === selected ? " selected" : "");
      tr.dataset.mq = mq.name;
      const name = cell(mq.name, "name"); tr.appendChild(name);
      tr.appendChild(cell(mq.modeText, "mode"));
      tr.appendChild(cell(mq.depth, "num depth"));
      tr.appendChild(cell(mq.consumers, "num consumers"));
      tr.appendChild(cell(mq.inFlight, "num inflight"));
      tr.appendChild(cell(rate(mq.produceRate), "num produce-rate"));
      tr.appendChild(cell(rate(mq.consumeRate), "num consume-rate"));
      const spark = document.createElement("td"); spark.appendChild(sparkline(mq.history)); tr.appendChild(spark);
      tr.appendChild(cell(mq.opened ? ago(mq.lastActivity, data.time) : "not opened yet", "activity"));
      tr.addEventListener("click", () => { selected = mq.name; refreshDetail(); });
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
  }

  function renderPanels(data) {
    const box = $("panels"), all = document.createDocumentFragment();
    data.panels.forEach((panel) => {
      const section = document.createElement("section"); section.dataset.panel = panel.name;
      const title = document.createElement("h2"); title.textContent = panel.title; section.appendChild(title);
      const table = document.createElement("table"), head = document.createElement("tr");
      panel.columns.forEach((c) => { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); });
      const thead = document.createElement("thead"); thead.appendChild(head); table.appendChild(thead);
      const tbody = document.createElement("tbody");
      if (panel.rows.length === 0) {
        const tr = document.createElement("tr"); tr.className = "empty";
        const td = cell(panel.emptyText); td.colSpan = panel.columns.length; tr.appendChild(td); tbody.appendChild(tr);
      }
      panel.rows.forEach((row) => { const tr = document.createElement("tr"); row.forEach((v) => tr.appendChild(cell(v))); tbody.appendChild(tr); });
      table.appendChild(tbody); section.appendChild(table); all.appendChild(section);
    });
    box.replaceChildren(all);
  }

  async function refreshDetail() {
    if (!selected) { $("detail").hidden = true; return; }
    const response = await fetch(detailURL + encodeURIComponent(selected), { cache: "no-store" });
    if (response.status === 404) { selected = null; $("detail").hidden = true; return; }
    const mq = await response.json();
    $("detail").hidden = false;
    $("detail-name").textContent = mq.name;
    $("detail-mode").textContent = mq.modeText;
    $("detail-depth").textContent = mq.depth;
    $("detail-inflight").textContent = mq.inFlight;
    $("detail-oldest").textContent = mq.oldestWaitingAgeMs === null ? "–" : duration(mq.oldestWaitingAgeMs / 1000);
    $("detail-produced").textContent = mq.produced;
    $("detail-consumed").textContent = mq.consumed;
    $("detail-redelivered").textContent = mq.redelivered;
    $("detail-topics").textContent = mq.topics.length ? mq.topics.join(", ") : "–";
    const seconds = Math.max(60, mq.history.produce.length);
    $("detail-span").textContent = " · last " + duration(seconds);
    chart($("detail-chart"), mq.history, seconds);
    const rows = document.createDocumentFragment();
    if (mq.consumerList.length === 0) {
      const tr = document.createElement("tr"); tr.className = "empty";
      const td = cell("no consumers"); td.colSpan = 4; tr.appendChild(td); rows.appendChild(tr);
    }
    mq.consumerList.forEach((c) => {
      const tr = document.createElement("tr");
      tr.appendChild(cell(c.remoteAddr)); tr.appendChild(cell(c.inFlight, "num"));
      tr.appendChild(cell(c.waiting ? "yes" : "no")); tr.appendChild(cell(c.topics.join(", ") || "–"));
      rows.appendChild(tr);
    });
    $("detail-consumers").replaceChildren(rows);
  }

  async function refresh() {
    try {
      const response = await fetch(overviewURL, { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      renderNode(data); renderQueues(data); renderPanels(data);
      if (selected) await refreshDetail();
    } catch (error) {
      const status = $("status"); status.textContent = "unreachable"; status.className = "status down";
    } finally {
      refreshes += 1;
      document.body.dataset.refreshes = String(refreshes);
      document.dispatchEvent(new CustomEvent("zbus:refreshed", { detail: refreshes }));
      setTimeout(refresh, 1000);
    }
  }

  $("detail-close").addEventListener("click", () => { selected = null; $("detail").hidden = true; });
  const hash = decodeURIComponent(location.hash.slice(1));
  if (hash) selected = hash;
  refresh();
})();
"""#
}
