import CPNG
import NNData

/// An uploaded picture as ink: one float per pixel in 0…1, high where the digit is, as in MNIST.
public struct InkImage: Equatable {
    public var width: Int
    public var height: Int
    public var ink: [Float]

    /// Larger pictures are refused before their pixels are allocated (a small PNG can claim huge dimensions).
    public static let maximumPixels = 4096 * 4096

    /// A PNG (any colour type, bit depth, interlacing) or PGM (P5, P2) picture. Dark ink on light paper and light ink
    /// on dark are both read as ink (the frame's brightness tells which); in a PNG with transparency, opacity is ink.
    public init(decoding bytes: [UInt8]) throws {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            self = try Self.png(bytes)
        } else if bytes.starts(with: [UInt8(ascii: "P"), UInt8(ascii: "5")]) || bytes.starts(with: [UInt8(ascii: "P"), UInt8(ascii: "2")]) {
            let image: PGMImage
            do { image = try PGMImage(parsing: bytes, name: "the PGM image") } catch { throw RequestError.badRequest("\(error)") }
            self = Self(brightness: image.pixels, width: image.width, height: image.height)
        } else {
            throw RequestError.unsupportedMediaType("not an image: expected PNG or PGM bytes, or JSON {\"instances\": [[…], …]}")
        }
    }

    init(width: Int, height: Int, ink: [Float]) {
        self.width = width
        self.height = height
        self.ink = ink
    }

    /// Brightness to ink: inverted when the picture's frame (its outermost pixels) is mostly light.
    init(brightness: [Float], width: Int, height: Int) {
        var frame: Float = 0, count: Float = 0
        for x in 0..<width { frame += brightness[x] + brightness[(height - 1) * width + x]; count += 2 }
        for y in 0..<height { frame += brightness[y * width] + brightness[y * width + width - 1]; count += 2 }
        let inverted = frame / count > 0.5
        self.init(width: width, height: height, ink: inverted ? brightness.map { 1 - $0 } : brightness)
    }

    private static func png(_ bytes: [UInt8]) throws -> InkImage {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        defer { png_image_free(&image) }
        func failure() -> RequestError {
            let message = withUnsafeBytes(of: image.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return .badRequest("not a readable PNG: \(message)")
        }
        guard bytes.withUnsafeBytes({ png_image_begin_read_from_memory(&image, $0.baseAddress, $0.count) }) != 0 else { throw failure() }
        let width = Int(image.width), height = Int(image.height)
        guard width * height <= maximumPixels else {
            throw RequestError.tooLarge("the image is \(width)×\(height); at most \(maximumPixels) pixels (4096×4096) are accepted")
        }
        let hasAlpha = image.format & png_uint_32(PNG_FORMAT_FLAG_ALPHA) != 0
        image.format = png_uint_32(PNG_FORMAT_GA)
        var pixels = [UInt8](repeating: 0, count: 2 * width * height)
        guard pixels.withUnsafeMutableBytes({ png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }) != 0 else { throw failure() }
        let scale: Float = 1 / 255
        if hasAlpha && stride(from: 1, to: pixels.count, by: 2).contains(where: { pixels[$0] < 255 }) {
            return InkImage(width: width, height: height, ink: stride(from: 1, to: pixels.count, by: 2).map { Float(pixels[$0]) * scale })
        }
        return InkImage(brightness: stride(from: 0, to: pixels.count, by: 2).map { Float(pixels[$0]) * scale }, width: width, height: height)
    }
}
