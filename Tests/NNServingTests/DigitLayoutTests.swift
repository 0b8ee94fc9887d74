import CPNG
import Foundation
import FuzzSeeds
import Testing
@testable import NNServing

@Suite struct DigitLayoutTests {
    /// A thick "L" of ink in a `size`×`size` picture, at `offset`, drawn on a canvas of `scale` pixels per unit.
    func ell(size: Int, at offset: (Int, Int), scale: Int) -> InkImage {
        var ink = [Float](repeating: 0, count: size * size * scale * scale)
        let w = size * scale
        for y in 0..<(12 * scale) { for x in 0..<(3 * scale) { ink[(offset.1 * scale + y) * w + offset.0 * scale + x] = 1 } }
        for y in (9 * scale)..<(12 * scale) { for x in 0..<(8 * scale) { ink[(offset.1 * scale + y) * w + offset.0 * scale + x] = 1 } }
        return InkImage(width: w, height: w, ink: ink)
    }

    func box(_ input: [Float]) -> (width: Int, height: Int, cx: Float, cy: Float) {
        var left = 28, right = -1, top = 28, bottom = -1
        var mass: Float = 0, cx: Float = 0, cy: Float = 0
        for y in 0..<28 { for x in 0..<28 where input[y * 28 + x] > 0 {
            left = min(left, x); right = max(right, x); top = min(top, y); bottom = max(bottom, y)
            let v = input[y * 28 + x]
            mass += v; cx += v * (Float(x) + 0.5); cy += v * (Float(y) + 0.5)
        } }
        return (right - left + 1, bottom - top + 1, cx / mass, cy / mass)
    }

    @Test func fitsTwentyPixelsAndCentresTheMass() throws {
        let input = try DigitLayout.mnistInput(ell(size: 40, at: (5, 20), scale: 1))
        let b = box(input)
        #expect(b.height == 20 && b.width <= 14, "\(b)")
        #expect(abs(b.cx - 14) <= 0.5 && abs(b.cy - 14) <= 0.5, "\(b)")
        #expect(input.allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    /// Where the digit is and how large it is drawn does not change what the model sees, up to resampling.
    @Test func positionAndScaleDoNotMatter() throws {
        let small = try DigitLayout.mnistInput(ell(size: 40, at: (2, 3), scale: 1))
        let large = try DigitLayout.mnistInput(ell(size: 40, at: (20, 25), scale: 7))
        let difference = zip(small, large).map { abs($0 - $1) }.reduce(0, +)
        #expect(difference / small.reduce(0, +) < 0.1, "\(difference)")
    }

    @Test func blankPicturesAreRefused() {
        #expect(throws: RequestError.unprocessable("no digit found: the image is blank")) {
            try DigitLayout.mnistInput(InkImage(width: 30, height: 30, ink: .init(repeating: 0.3, count: 900)))
        }
    }

    /// PNGs written by libpng: dark ink on light paper is inverted, and in a picture with transparency opacity is ink.
    @Test func pngPolarityAndTransparency() throws {
        let w = 16, h = 12
        var gray = [UInt8](repeating: 250, count: w * h)
        gray[5 * w + 7] = 10
        let paper = try InkImage(decoding: FuzzSeeds.png(gray, width: w, height: h, format: UInt32(PNG_FORMAT_GRAY)))
        #expect(paper.width == w && paper.height == h)
        #expect(abs(paper.ink[5 * w + 7] - 245 / 255) < 1e-6 && abs(paper.ink[0] - 5 / 255) < 1e-6)

        var rgba = [UInt8](repeating: 0, count: w * h * 4)  // transparent black
        for i in [3 * w + 4, 3 * w + 5] { rgba[4 * i ..< 4 * i + 4] = [255, 255, 255, 200] }  // translucent white strokes
        let clear = try InkImage(decoding: FuzzSeeds.png(rgba, width: w, height: h, format: UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)))
        #expect(abs(clear.ink[3 * w + 4] - 200 / 255) < 1e-6 && clear.ink[0] == 0)

        #expect(throws: RequestError.self) { try InkImage(decoding: Array(FuzzSeeds.png(gray, width: w, height: h, format: UInt32(PNG_FORMAT_GRAY)).prefix(40))) }
    }
}
