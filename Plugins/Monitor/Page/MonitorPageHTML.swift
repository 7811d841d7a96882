/// The page's HTML shell; the script fills it in.
enum MonitorPageHTML {
    static let text = #"""
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>zbus monitor</title>
<link rel="stylesheet" href="/monitor/app.css">
</head>
<body>
<header>
  <h1>zbus <span id="node-name"></span></h1>
  <span id="status" class="status">connecting…</span>
</header>
<main>
  <section id="node" class="cards" aria-label="node">
    <div class="card"><div class="label">Version</div><div class="value" id="node-version">–</div></div>
    <div class="card"><div class="label">Address</div><div class="value" id="node-address">–</div></div>
    <div class="card"><div class="label">Uptime</div><div class="value" id="node-uptime">–</div></div>
    <div class="card"><div class="label">Connections</div><div class="value" id="node-connections">–</div></div>
    <div class="card"><div class="label">Store</div><div class="value" id="node-store">–</div></div>
    <div class="card"><div class="label">MQs</div><div class="value" id="node-mqs">–</div></div>
  </section>
  <section aria-label="message queues">
    <h2>Message queues</h2>
    <table id="mq-table">
      <thead><tr>
        <th>MQ</th><th>Mode</th><th class="num">Depth</th><th class="num">Consumers</th><th class="num">In flight</th>
        <th class="num">Produce/s</th><th class="num">Consume/s</th><th>Last minute</th><th>Last activity</th>
      </tr></thead>
      <tbody id="mq-rows"><tr class="empty"><td colspan="9">loading…</td></tr></tbody>
    </table>
  </section>
  <section id="detail" hidden aria-label="MQ detail">
    <h2>MQ <span id="detail-name"></span> <button id="detail-close" type="button">close</button></h2>
    <div class="cards">
      <div class="card"><div class="label">Mode</div><div class="value" id="detail-mode">–</div></div>
      <div class="card"><div class="label">Depth</div><div class="value" id="detail-depth">–</div></div>
      <div class="card"><div class="label">In flight</div><div class="value" id="detail-inflight">–</div></div>
      <div class="card"><div class="label">Oldest waiting</div><div class="value" id="detail-oldest">–</div></div>
      <div class="card"><div class="label">Produced</div><div class="value" id="detail-produced">–</div></div>
      <div class="card"><div class="label">Consumed</div><div class="value" id="detail-consumed">–</div></div>
      <div class="card"><div class="label">Redelivered</div><div class="value" id="detail-redelivered">–</div></div>
      <div class="card"><div class="label">Topics</div><div class="value" id="detail-topics">–</div></div>
    </div>
    <div class="chart-box">
      <canvas id="detail-chart" width="900" height="220" aria-label="rates"></canvas>
      <div class="legend"><span class="produce">■ produce/s</span> <span class="consume">■ consume/s</span> <span id="detail-span"></span></div>
    </div>
    <h3>Consumers</h3>
    <table>
      <thead><tr><th>Address</th><th class="num">In flight</th><th>Waiting</th><th>Topics</th></tr></thead>
      <tbody id="detail-consumers"></tbody>
    </table>
  </section>
  <div id="panels"></div>
  <p class="note">Read-only view. Creating and removing MQs from this page waits for access control.
    Metrics for Prometheus: <a href="/metrics">/metrics</a> · health: <a href="/health">/health</a></p>
</main>
<script src="/monitor/app.js"></script>
</body>
</html>
"""#
}
