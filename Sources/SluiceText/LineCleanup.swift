internal import CSluiceScan

/// The line pass of the clean stage: trims line ends, collapses runs of spaces and tabs inside a line (leading
/// indentation is kept, so code stays readable), drops boilerplate lines, and keeps at most one blank line between
/// paragraphs, none at the start or end.
enum LineCleanup {
    /// Writes the cleaned text to `output` and returns the number of boilerplate lines removed. With `basis`,
    /// also writes the same text with the boilerplate lines kept.
    static func clean(
        _ input: UnsafeBufferPointer<UInt8>, collapsesWhitespace: Bool, removesBoilerplate: Bool,
        boilerplate: inout BoilerplateFilter, into output: inout [UInt8], basis: UnsafeMutablePointer<[UInt8]>? = nil
    ) -> Int {
        output.removeAll(keepingCapacity: true)
        output.reserveCapacity(input.count)
        basis?.pointee.reserveCapacity(input.count)
        let n = input.count
        var removed = 0
        var pendingBlank = false
        var basisPendingBlank = false
        var lineStart = 0
        while lineStart <= n {
            let lineEnd = indexOf(0x0A, in: input, from: lineStart) ?? n
            var contentStart = lineStart
            while contentStart < lineEnd && ByteClass.isBlank(input[contentStart]) { contentStart += 1 }
            var contentEnd = lineEnd
            while contentEnd > contentStart && ByteClass.isBlank(input[contentEnd - 1]) { contentEnd -= 1 }
            if contentStart == contentEnd {
                if !output.isEmpty { pendingBlank = true }
                if let basis, !basis.pointee.isEmpty { basisPendingBlank = true }
                lineStart = lineEnd + 1
                continue
            }
            var basisLine = 0  // where this line starts in the basis
            if let basis {
                if !basis.pointee.isEmpty {
                    basis.pointee.append(0x0A)
                    if basisPendingBlank { basis.pointee.append(0x0A) }
                }
                basisPendingBlank = false
                basisLine = basis.pointee.count
                basis.pointee.append(contentsOf: UnsafeBufferPointer(rebasing: input[lineStart..<contentStart]))
                appendCollapsed(input, contentStart..<contentEnd, to: &basis.pointee)
            }
            if removesBoilerplate && boilerplate.isBoilerplate(input, contentStart..<contentEnd) {
                removed += 1
            } else {
                if !output.isEmpty {
                    output.append(0x0A)
                    if pendingBlank { output.append(0x0A) }
                }
                pendingBlank = false
                if collapsesWhitespace, let basis {
                    // The same line, already collapsed into the basis.
                    basis.pointee.withUnsafeBufferPointer { output.append(contentsOf: UnsafeBufferPointer(rebasing: $0[basisLine...])) }
                } else if collapsesWhitespace {
                    output.append(contentsOf: UnsafeBufferPointer(rebasing: input[lineStart..<contentStart]))
                    appendCollapsed(input, contentStart..<contentEnd, to: &output)
                } else {
                    output.append(contentsOf: UnsafeBufferPointer(rebasing: input[lineStart..<lineEnd]))
                }
            }
            lineStart = lineEnd + 1
        }
        return removed
    }

    private static func appendCollapsed(_ input: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, to output: inout [UInt8]) {
        // Most lines have nothing to collapse (no tab, no two spaces in a row): copy them whole. The range is
        // trimmed, so whatever it holds is inside the line.
        let clean = sluice_has_tab_or_double_space(input.baseAddress! + range.lowerBound, range.count) == 0
        if clean {
            output.append(contentsOf: UnsafeBufferPointer(rebasing: input[range]))
            return
        }
        var i = range.lowerBound
        var runStart = i
        while i < range.upperBound {
            if ByteClass.isBlank(input[i]) {
                output.append(contentsOf: UnsafeBufferPointer(rebasing: input[runStart..<i]))
                output.append(0x20)
                while i < range.upperBound && ByteClass.isBlank(input[i]) { i += 1 }
                runStart = i
            } else {
                i += 1
            }
        }
        output.append(contentsOf: UnsafeBufferPointer(rebasing: input[runStart..<range.upperBound]))
    }
}
