/// The page's styles.
enum MonitorPageStyles {
    static let text = #"""
:root { --bg: #f6f7f9; --fg: #1d232b; --muted: #6a7480; --card: #fff; --line: #dde2e8;
        --produce: #2f7ed8; --consume: #2ca25f; --warn: #c0392b; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; align-items: center; justify-content: space-between; padding: 12px 24px;
         background: #1d232b; color: #fff; }
header h1 { font-size: 18px; margin: 0; font-weight: 600; }
header h1 span { color: #9fb3c8; font-weight: 400; }
.status { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #3a4450; }
.status.ok { background: #2ca25f; } .status.down { background: var(--warn); }
main { padding: 16px 24px; max-width: 1400px; }
h2 { font-size: 16px; margin: 20px 0 8px; } h3 { font-size: 14px; margin: 16px 0 6px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card .label { color: var(--muted); font-size: 12px; } .card .value { font-size: 18px; font-weight: 600; }
table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line); }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: #eef1f5; font-weight: 600; font-size: 12px; color: #3a4450; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr.mq { cursor: pointer; } tbody tr.mq:hover { background: #f0f5fb; }
tbody tr.selected { background: #e3eefa; }
tr.empty td { color: var(--muted); text-align: center; }
a { color: var(--produce); }
.chart-box { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 8px; margin-top: 12px; }
canvas { width: 100%; height: 220px; display: block; }
.legend { font-size: 12px; color: var(--muted); } .legend .produce { color: var(--produce); } .legend .consume { color: var(--consume); }
svg.spark { display: block; }
button { font: inherit; font-size: 12px; margin-left: 8px; }
.note { color: var(--muted); font-size: 12px; margin-top: 24px; }
"""#
}
