internal import Foundation
internal import SluiceShards

/// The dashboard at `/`: plain HTML with server-rendered SVG charts, no scripts, no external fonts or files; it
/// refreshes itself every `refreshSeconds`.
enum Dashboard {
    struct Inputs {
        var modelVersion: String
        var validationLoss: Float?
        /// (step, validation loss) of the model's checkpoints, oldest first.
        var validationCurve: [(Int, Float)]
        var overview: IndexOverview?
        /// Rejections of an offline curate run (its rejected.jsonl), by "stage/reason".
        var curateRejections: [String: Int]
        var latency: [(route: String, p50: Double, p99: Double, count: Int)]
        var generatedTokens: Int
        var scoredTexts: Int
        /// Records per second and in all per topic (ingestion: raw topics; curation: sluice.* topics), when the
        /// gateway watches a cluster.
        var topicRates: [TopicActivity.Rate] = []
        var refreshSeconds = 10
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// Horizontal bars, one per label, with the value printed at the end.
    static func bars(_ title: String, _ items: [(String, Double)], format: (Double) -> String = { String(Int($0)) }) -> String {
        guard !items.isEmpty else { return "<section><h2>\(escape(title))</h2><p class=\"empty\">no data</p></section>" }
        let maximum = max(items.map(\.1).max() ?? 1, 1e-9)
        let rowHeight = 22, width = 560, labelWidth = 190
        var svg = "<svg role=\"img\" aria-label=\"\(escape(title))\" width=\"\(width)\" height=\"\(items.count * rowHeight + 8)\" xmlns=\"http://www.w3.org/2000/svg\">"
        for (index, (label, value)) in items.enumerated() {
            let y = index * rowHeight + 4
            let length = Int(Double(width - labelWidth - 80) * value / maximum)
            svg += "<text x=\"0\" y=\"\(y + 15)\" font-size=\"13\">\(escape(label))</text>"
            svg += "<rect x=\"\(labelWidth)\" y=\"\(y + 3)\" width=\"\(max(length, 1))\" height=\"15\" fill=\"#3b7dd8\"><title>\(escape(label)): \(escape(format(value)))</title></rect>"
            svg += "<text x=\"\(labelWidth + length + 6)\" y=\"\(y + 15)\" font-size=\"13\" class=\"value\">\(escape(format(value)))</text>"
        }
        return "<section><h2>\(escape(title))</h2>\(svg)</svg></section>"
    }

    /// A line through (x, y) points with its axes' ranges printed.
    static func line(_ title: String, _ points: [(Double, Double)], xLabel: String, yLabel: String) -> String {
        guard points.count >= 1 else { return "<section><h2>\(escape(title))</h2><p class=\"empty\">no data</p></section>" }
        let width = 560.0, height = 180.0, pad = 40.0
        let xs = points.map(\.0), ys = points.map(\.1)
        let (x0, x1) = (xs.min()!, max(xs.max()!, xs.min()! + 1e-9)), (y0, y1) = (ys.min()!, max(ys.max()!, ys.min()! + 1e-9))
        let path = points.map { point in
            let x = pad + (point.0 - x0) / (x1 - x0) * (width - 2 * pad)
            let y = height - pad - (point.1 - y0) / (y1 - y0) * (height - 2 * pad)
            return String(format: "%.1f,%.1f", x, y)
        }.joined(separator: " ")
        var svg = "<svg role=\"img\" aria-label=\"\(escape(title))\" width=\"\(Int(width))\" height=\"\(Int(height))\" xmlns=\"http://www.w3.org/2000/svg\">"
        svg += "<polyline fill=\"none\" stroke=\"#d8553b\" stroke-width=\"2\" points=\"\(path)\"/>"
        for point in path.split(separator: " ") {
            let xy = point.split(separator: ",")
            svg += "<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"3\" fill=\"#d8553b\"/>"
        }
        svg += "<text x=\"\(Int(pad))\" y=\"\(Int(height - 8))\" font-size=\"12\">\(escape(xLabel)) \(String(format: "%g", x0))…\(String(format: "%g", x1))</text>"
        svg += "<text x=\"4\" y=\"14\" font-size=\"12\">\(escape(yLabel)) \(String(format: "%.3f", y0))…\(String(format: "%.3f", y1))</text>"
        return "<section><h2>\(escape(title))</h2>\(svg)</svg></section>"
    }

    static func render(_ inputs: Inputs) -> String {
        var sections: [String] = []
        let loss = inputs.validationLoss.map { String(format: "validation loss %.4f (perplexity %.2f)", $0, exp(Double($0))) } ?? "no validation loss recorded"
        var summary = "<p class=\"summary\">Model <strong>\(escape(inputs.modelVersion))</strong>: \(loss). "
        summary += "Generated tokens: <span id=\"generated\">\(inputs.generatedTokens)</span>; scored texts: <span id=\"scored\">\(inputs.scoredTexts)</span>.</p>"
        if let overview = inputs.overview {
            let stored = overview.shards.reduce(0) { $0 + $1.storedBytes }
            summary += "<p class=\"summary\">Curated: <span id=\"shards\">\(overview.shards.count)</span> shards, "
            summary += "<span id=\"samples\">\(overview.samples)</span> samples, \(String(format: "%.1f", Double(stored) / 1_048_576)) MiB stored.</p>"
            // Ingestion and curation: samples sealed over time.
            var cumulative = 0
            let sealed = overview.shards.enumerated().map { index, shard -> (Double, Double) in
                cumulative += shard.samples
                return (Double(index + 1), Double(cumulative))
            }
            sections.append(line("Samples curated, by shard sealed", sealed, xLabel: "shard", yLabel: "samples"))
            sections.append(bars("Shard sizes (MiB stored)", overview.shards.suffix(20).map { ($0.name, Double($0.storedBytes) / 1_048_576) }) {
                String(format: "%.2f", $0)
            })
            sections.append(bars("Quality score", overview.quality.enumerated().map { (String(format: "%.1f–%.1f", Double($0.offset) / 10, Double($0.offset + 1) / 10), Double($0.element)) }))
            sections.append(bars("Languages", overview.languages.sorted { $0.value > $1.value }.map { ($0.key, Double($0.value)) }))
            sections.append(bars("Sources", overview.sources.sorted { $0.value > $1.value }.prefix(12).map { ($0.key, Double($0.value)) }))
            let rejections = overview.rejections.merging(inputs.curateRejections) { $0 + $1 }
            let dedup = rejections.filter { $0.key.hasPrefix("dedup/") }.values.reduce(0, +)
            let seen = overview.samples + rejections.values.reduce(0, +)
            summary += "<p class=\"summary\">Dropped: \(rejections.values.reduce(0, +)); dedup rate: <span id=\"dedup\">\(seen > 0 ? String(format: "%.1f%%", 100 * Double(dedup) / Double(seen)) : "n/a")</span>.</p>"
            sections.append(bars("Drop reasons (top 12)", rejections.sorted { $0.value > $1.value }.prefix(12).map { ($0.key, Double($0.value)) }))
        }
        if !inputs.topicRates.isEmpty {
            sections.append(bars("Records/s by topic (last minute)", inputs.topicRates.map { ($0.topic, $0.perSecond) }) { String(format: "%.1f", $0) })
            sections.append(bars("Records in topics", inputs.topicRates.map { ($0.topic, Double($0.total)) }))
        }
        sections.append(line("Model validation loss by step", inputs.validationCurve.map { (Double($0.0), Double($0.1)) }, xLabel: "step", yLabel: "loss"))
        sections.append(bars("Gateway latency p50 (ms)", inputs.latency.map { ($0.route, $0.p50 * 1000) }) { String(format: "%.1f", $0) })
        sections.append(bars("Gateway latency p99 (ms)", inputs.latency.map { ($0.route, $0.p99 * 1000) }) { String(format: "%.1f", $0) })
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="\(inputs.refreshSeconds)">
            <title>Sluice</title>
            <style>body{font-family:sans-serif;margin:24px;color:#222}section{display:inline-block;vertical-align:top;margin:0 24px 24px 0}
            h1{font-size:22px}h2{font-size:15px;margin:8px 0}.summary{font-size:14px}.empty{color:#888;font-size:13px}</style></head>
            <body><h1>Sluice</h1>\(summary)\(sections.joined(separator: "\n"))</body></html>
            """
    }
}
