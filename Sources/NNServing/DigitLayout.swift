/// Lays a picture of a digit out the way MNIST's were (LeCun et al.): the digit's bounding box scaled, keeping its
/// aspect ratio, to fit a 20×20 box with area averaging (which anti-aliases), then put in a 28×28 field so that its
/// centre of mass is the field's centre.
public enum DigitLayout {
    public static let field = 28
    public static let box = 20

    /// The 784 inputs for `image`; a picture with no ink is an error to report, not a guess.
    public static func mnistInput(_ image: InkImage) throws -> [Float] {
        // Paper is rarely pure: the frame's mean ink is taken as the background and removed, the strongest ink made 1.
        var frame: Float = 0
        for x in 0..<image.width { frame += image.ink[x] + image.ink[(image.height - 1) * image.width + x] }
        for y in 0..<image.height { frame += image.ink[y * image.width] + image.ink[y * image.width + image.width - 1] }
        let background = frame / Float(2 * (image.width + image.height))
        let strongest = image.ink.max() ?? 0
        guard strongest - background > 0.1 else { throw RequestError.unprocessable("no digit found: the image is blank") }
        let gain = 1 / (strongest - background)
        let ink = image.ink.map { max(0, min(1, ($0 - background) * gain)) }

        // Bounding box of the ink that stands out from noise.
        var left = image.width, right = -1, top = image.height, bottom = -1
        for y in 0..<image.height {
            for x in 0..<image.width where ink[y * image.width + x] > 0.05 {
                left = min(left, x); right = max(right, x); top = min(top, y); bottom = max(bottom, y)
            }
        }
        let boxWidth = right - left + 1, boxHeight = bottom - top + 1
        let scale = Double(box) / Double(max(boxWidth, boxHeight))
        let outWidth = max(1, Int((Double(boxWidth) * scale).rounded())), outHeight = max(1, Int((Double(boxHeight) * scale).rounded()))

        // Area averaging, separably: rows first, then columns.
        let horizontal = weights(from: left, count: boxWidth, to: outWidth)
        let vertical = weights(from: top, count: boxHeight, to: outHeight)
        var rows = [Float](repeating: 0, count: boxHeight * outWidth)
        for y in 0..<boxHeight {
            let source = (top + y) * image.width
            for (o, taps) in horizontal.enumerated() {
                rows[y * outWidth + o] = taps.reduce(0) { $0 + $1.weight * ink[source + $1.index] }
            }
        }
        var digit = [Float](repeating: 0, count: outHeight * outWidth)
        for (o, taps) in vertical.enumerated() {
            for x in 0..<outWidth {
                digit[o * outWidth + x] = taps.reduce(0) { $0 + $1.weight * rows[($1.index - top) * outWidth + x] }
            }
        }

        // Centre of mass to the centre of the field.
        var mass: Float = 0, cx: Float = 0, cy: Float = 0
        for y in 0..<outHeight {
            for x in 0..<outWidth {
                let v = digit[y * outWidth + x]
                mass += v; cx += v * (Float(x) + 0.5); cy += v * (Float(y) + 0.5)
            }
        }
        let half = Float(field) / 2
        let dx = Int((half - cx / mass).rounded()), dy = Int((half - cy / mass).rounded())
        var output = [Float](repeating: 0, count: field * field)
        for y in 0..<outHeight {
            for x in 0..<outWidth {
                let fx = x + dx, fy = y + dy
                if (0..<field).contains(fx) && (0..<field).contains(fy) { output[fy * field + fx] = min(1, digit[y * outWidth + x]) }
            }
        }
        return output
    }

    /// For each of `outputs` cells spanning source pixels `first ..< first + count` evenly: the source pixels it
    /// overlaps and the share of the cell each covers.
    private static func weights(from first: Int, count: Int, to outputs: Int) -> [[(index: Int, weight: Float)]] {
        let step = Double(count) / Double(outputs)
        return (0..<outputs).map { o in
            let a = Double(o) * step, b = Double(o + 1) * step
            return (Int(a.rounded(.down))..<min(count, Int(b.rounded(.up)))).compactMap { i in
                let overlap = min(b, Double(i + 1)) - max(a, Double(i))
                return overlap > 0 ? (first + i, Float(overlap / step)) : nil
            }
        }
    }
}
