import NNCore

/// Labelled 8-bit images. Images stay as bytes in memory (47 MB for MNIST's training set) and become floats
/// in [0, 1] one batch at a time.
public struct Dataset: BatchSource, Sendable {
    public let name: String
    public let images: [UInt8]
    public let labels: [UInt8]
    public let rows: Int
    public let columns: Int
    public let classes: Int

    public var sampleCount: Int { labels.count }
    public var inputWidth: Int { rows * columns }

    public init(name: String, images: [UInt8], labels: [UInt8], rows: Int, columns: Int, classes: Int) {
        precondition(images.count == labels.count * rows * columns)
        self.name = name; self.images = images; self.labels = labels
        self.rows = rows; self.columns = columns; self.classes = classes
    }

    /// Pairs an images file (n × rows × columns) with a labels file (n), checking that they agree.
    public init(name: String, imagesPath: String, labelsPath: String, classes: Int) throws {
        let images = try IDXArray(contentsOf: imagesPath)
        let labels = try IDXArray(contentsOf: labelsPath)
        guard images.dimensions.count == 3 else {
            throw DataError("\(imagesPath): expected 3 dimensions (count × rows × columns), found \(images.dimensions.count); is this a labels file?")
        }
        guard labels.dimensions.count == 1 else {
            throw DataError("\(labelsPath): expected 1 dimension (count), found \(labels.dimensions.count); is this an images file?")
        }
        guard images.dimensions[0] == labels.dimensions[0] else {
            throw DataError("\(imagesPath) has \(images.dimensions[0]) images but \(labelsPath) has \(labels.dimensions[0]) labels; the files do not belong together")
        }
        if let bad = labels.elements.firstIndex(where: { Int($0) >= classes }) {
            throw DataError("\(labelsPath): label \(labels.elements[bad]) at index \(bad) is not one of the \(classes) classes")
        }
        self.init(name: name, images: images.elements, labels: labels.elements,
                  rows: images.dimensions[1], columns: images.dimensions[2], classes: classes)
    }

    /// A subset (a shard, a client's partition) that shares nothing with `self` but the values.
    public func subset(_ indices: [Int]) -> Dataset {
        var images = [UInt8](); images.reserveCapacity(indices.count * inputWidth)
        for i in indices { images.append(contentsOf: self.images[(i * inputWidth)..<((i + 1) * inputWidth)]) }
        return Dataset(name: name, images: images, labels: indices.map { labels[$0] }, rows: rows, columns: columns, classes: classes)
    }

    /// SHA-256 of the shape, labels and pixels: two processes with equal fingerprints train on the same data.
    public var fingerprint: [UInt8] {
        var header: [UInt8] = []
        for v in [sampleCount, rows, columns, classes] { withUnsafeBytes(of: UInt32(v).littleEndian) { header += $0 } }
        return SHA256.digest(header + SHA256.digest(labels) + SHA256.digest(images))
    }

    public func gather(_ indices: ArraySlice<Int>, into x: UnsafeMutablePointer<Float>, labels out: UnsafeMutablePointer<Int32>) {
        let width = inputWidth
        let scale: Float = 1 / 255
        images.withUnsafeBufferPointer { pixels in
            for (row, i) in indices.enumerated() {
                let source = pixels.baseAddress! + i * width, target = x + row * width
                for j in 0..<width { target[j] = Float(source[j]) * scale }
                out[row] = Int32(labels[i])
            }
        }
    }
}
