/// A table for people: a header row, columns padded to their widest cell, numbers aligned right.
struct TextTable {
    /// A column: its title and whether its cells are numbers (aligned right).
    struct Column {
        let title: String
        let numeric: Bool

        init(_ title: String, numeric: Bool = false) {
            self.title = title
            self.numeric = numeric
        }
    }

    let columns: [Column]
    private(set) var rows: [[String]] = []

    init(_ columns: [Column]) {
        self.columns = columns
    }

    /// Adds a row; missing cells are empty, extra ones are dropped.
    mutating func append(_ cells: [String]) {
        rows.append(Array((cells + Array(repeating: "", count: max(0, columns.count - cells.count))).prefix(columns.count)))
    }

    /// The table as lines ending in `\n`; without rows, only the header.
    func render() -> String {
        var widths = columns.map { $0.title.count }
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var parts: [String] = []
            for (index, cell) in cells.enumerated() {
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                let isLast = index == cells.count - 1
                if columns[index].numeric {
                    parts.append(padding + cell)
                } else {
                    parts.append(isLast ? cell : cell + padding)
                }
            }
            var text = parts.joined(separator: "  ")
            while text.last == " " { text.removeLast() }  // an empty last cell leaves no trailing blanks
            return text + "\n"
        }
        return ([line(columns.map(\.title))] + rows.map(line)).joined()
    }
}
