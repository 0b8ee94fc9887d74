import CZlib
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

    /// Identifies the data (shape, labels, pixels) so that processes can check they train on the same set.
    /// CRC-32 of labels and pixels (zlib's, fast enough to run at every start even in a debug build) under a
    /// SHA-256; it catches different or damaged files, not a forgery.
    public var fingerprint: [UInt8] {
        var summary: [UInt8] = []
        func crc(_ bytes: [UInt8]) -> UInt32 {
            bytes.withUnsafeBufferPointer { UInt32(crc32_z(0, $0.baseAddress, $0.count)) }
        }
        for v in [UInt32(sampleCount), UInt32(rows), UInt32(columns), UInt32(classes), crc(labels), crc(images)] {
            withUnsafeBytes(of: v.littleEndian) { summary += $0 }
        }
        return SHA256.digest(summary)
    }

    public func gather(_ indices: ArraySlice<Int>, into x: UnsafeMutablePointer<Float>, labels out: UnsafeMutablePointer<Int32>) {
        let width = inputWidth
        let scale: Float = 1 / 255
        images.withUnsafeBufferPointer { pixels in
            for (row, i) in indices.enumerated() {
                let source = pixels.baseAddress! + i * width, target = x + row * width
                BLAS.scale(bytes: source, by: scale, into: target, count: width)
                out[row] = Int32(labels[i])
            }
        }
    }
}
