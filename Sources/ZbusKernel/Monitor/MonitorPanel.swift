/// A table that a module adds to the monitor page, such as a tracker's view of the cluster.
///
/// The page shows each panel under its title, refreshed with the rest of the page; `/monitor/api/overview` carries
/// the same rows for scripts.
///
/// ```swift
/// contributions.add(ClusterPanel(table: table), named: "cluster", to: .monitorPanels)
/// ```
public protocol MonitorPanel: Sendable {
    /// The heading shown above the table (`Cluster`).
    var title: String { get }
    /// The table as it is now. Called off the event loops, about once a second while a page is open.
    func table() async -> MonitorTable
}

/// The contents of a ``MonitorPanel``: column headings and rows of text, one cell per column.
public struct MonitorTable: Sendable, Equatable {
    /// The column headings.
    public var columns: [String]
    /// The rows, each with one cell per column.
    public var rows: [[String]]
    /// What the page shows when there are no rows (`no servers have joined`).
    public var emptyText: String

    /// Creates a table.
    public init(columns: [String], rows: [[String]], emptyText: String = "nothing to show") {
        self.columns = columns
        self.rows = rows
        self.emptyText = emptyText
    }
}

extension ExtensionPoint where Value == any MonitorPanel {
    /// Tables shown on the monitor page below the MQs, by name (one name per panel; the page orders them by name).
    public static var monitorPanels: ExtensionPoint {
        .named("monitor.panels", noun: "monitor panel")
    }
}
