import Foundation

/// Reads a prediction request's JSON body, `{"instances": [[v, v, …], …]}`, straight into one row-major float matrix.
///
/// Why not Foundation's JSON: a 64-image body is 275 KB and 50,176 numbers, and JSONSerialization or JSONDecoder take
/// 15–17 ms for it here (boxing every number), 40 times the model's own work. This reader keeps to the JSON grammar
/// (RFC 8259) for everything it accepts, rejects whatever else with the byte offset, and converts numbers as a JSON
/// reader in double precision then float32 would: exactly when mantissa and power of ten allow (Clinger's fast path),
/// else with `strtod`.
public struct InstancesReader {
    public static let maximumInstances = 1024

    /// The instances, each scaled to 0…1: an instance whose values all lie in 0…1 is taken as it is; one with a value
    /// above 1 is read as 0…255 and divided by 255.
    public static func read(_ bytes: UnsafeRawBufferPointer, width: Int) throws -> (values: [Float], count: Int) {
        var reader = InstancesReader(bytes: bytes.bindMemory(to: UInt8.self), width: width)
        return try reader.read()
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private let width: Int
    private var position = 0
    private var values: [Float] = []

    private init(bytes: UnsafeBufferPointer<UInt8>, width: Int) {
        self.bytes = bytes
        self.width = width
    }

    private mutating func read() throws -> (values: [Float], count: Int) {
        try expect(UInt8(ascii: "{"), "a JSON object {\"instances\": [[…], …]}")
        var count: Int?
        repeat {
            skipSpace()
            let key = try string()
            try expect(UInt8(ascii: ":"), "':' after the key")
            guard key == "instances" else { throw RequestError.badRequest("unknown key \"\(key)\": the body is {\"instances\": [[…], …]}") }
            guard count == nil else { throw RequestError.badRequest("\"instances\" is given twice") }
            count = try instances()
        } while try !next(UInt8(ascii: "}"), "',' or '}' in the object")
        skipSpace()
        guard position == bytes.count else { throw malformed("unexpected data after the JSON object") }
        guard let count else { throw RequestError.badRequest("the body has no \"instances\"") }
        return (values, count)
    }

    private mutating func instances() throws -> Int {
        try expect(UInt8(ascii: "["), "'[' to open the list of instances")
        skipSpace()
        if peek == UInt8(ascii: "]") { throw RequestError.badRequest("\"instances\" is empty") }
        var count = 0
        repeat {
            guard count < Self.maximumInstances else {
                throw RequestError.tooLarge("more than \(Self.maximumInstances) instances in one request")
            }
            try instance(count)
            count += 1
        } while try !next(UInt8(ascii: "]"), "',' or ']' in the list of instances")
        return count
    }

    private mutating func instance(_ index: Int) throws {
        let width = self.width
        try expect(UInt8(ascii: "["), "instance \(index) to be a list of \(width) numbers")
        let start = values.count
        values.reserveCapacity(start + width)
        skipSpace()
        if peek != UInt8(ascii: "]") {
            repeat {
                skipSpace()
                guard values.count - start < width else {
                    throw RequestError.badRequest("instance \(index) has more than \(width) values; the model takes \(width)")
                }
                values.append(Float(try number(instance: index)))
            } while try !next(UInt8(ascii: "]"), "',' or ']' in instance \(index)")
        } else {
            position += 1
        }
        let n = values.count - start
        guard n == width else { throw RequestError.badRequest("instance \(index) has \(n) values; the model takes \(width)") }
        var largest: Float = 0
        for i in start..<values.count {
            let v = values[i]
            guard v >= 0 && v <= 255 else {
                throw RequestError.badRequest("instance \(index), value \(i - start) is \(v): values must lie in 0…1 or 0…255")
            }
            largest = max(largest, v)
        }
        if largest > 1 {
            let scale: Float = 1 / 255
            for i in start..<values.count { values[i] *= scale }
        }
    }

    // MARK: Grammar

    private var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func skipSpace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    private mutating func expect(_ byte: UInt8, _ what: @autoclosure () -> String) throws {
        skipSpace()
        guard peek == byte else { throw malformed("expected \(what())") }
        position += 1
    }

    /// After a member of a list: true when `close` ends it, false after a ',' that announces another member.
    private mutating func next(_ close: UInt8, _ what: @autoclosure () -> String) throws -> Bool {
        skipSpace()
        switch peek {
        case UInt8(ascii: ","): position += 1; return false
        case close: position += 1; return true
        default: throw malformed("expected \(what())")
        }
    }

    /// A key. Escapes are refused: the only key there is, "instances", needs none.
    private mutating func string() throws -> String {
        guard peek == UInt8(ascii: "\"") else { throw malformed("expected a key in double quotes") }
        position += 1
        let start = position
        while let b = peek, b != UInt8(ascii: "\"") {
            guard b >= 0x20, b != UInt8(ascii: "\\") else { throw malformed("unsupported character in a key") }
            position += 1
            guard position - start <= 64 else { throw malformed("a key longer than 64 bytes") }
        }
        guard peek != nil else { throw malformed("unterminated key") }
        position += 1
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<(position - 1)]), as: UTF8.self)
    }

    /// A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    private mutating func number(instance: Int) throws -> Double {
        let start = position
        var negative = false
        if peek == UInt8(ascii: "-") { negative = true; position += 1 }
        var mantissa: UInt64 = 0
        var digits = 0, exponent = 0
        func isDigit(_ b: UInt8?) -> Bool { b.map { $0 &- 0x30 < 10 } ?? false }
        guard isDigit(peek) else {
            throw position < bytes.count && [UInt8(ascii: "\""), UInt8(ascii: "["), UInt8(ascii: "n"), UInt8(ascii: "t"), UInt8(ascii: "f")].contains(bytes[position])
                ? RequestError.badRequest("instance \(instance) holds something that is not a number at byte \(position)")
                : malformed(peek == UInt8(ascii: "N") || peek == UInt8(ascii: "I") ? "expected a number (JSON has no NaN or Infinity)" : "expected a number")
        }
        if peek == UInt8(ascii: "0") {
            position += 1
            guard !isDigit(peek) else { throw malformed("a number with a leading zero") }
        } else {
            while let b = peek, b &- 0x30 < 10 {
                if digits < 19 { mantissa = mantissa * 10 + UInt64(b - 0x30) } else { exponent += 1 }
                if mantissa != 0 { digits += 1 }
                position += 1
            }
        }
        if peek == UInt8(ascii: ".") {
            position += 1
            guard isDigit(peek) else { throw malformed("a number with no digits after '.'") }
            while let b = peek, b &- 0x30 < 10 {
                if digits < 19 { mantissa = mantissa * 10 + UInt64(b - 0x30); exponent -= 1; if mantissa != 0 { digits += 1 } }
                position += 1
            }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            position += 1
            var sign = 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { sign = peek == UInt8(ascii: "-") ? -1 : 1; position += 1 }
            guard isDigit(peek) else { throw malformed("a number with no digits in its exponent") }
            var e = 0
            while let b = peek, b &- 0x30 < 10 {
                e = min(e * 10 + Int(b - 0x30), 100_000)
                position += 1
            }
            exponent += sign * e
        }
        let value: Double
        if digits < 19 && mantissa < 1 << 53 && abs(exponent) <= 22 {
            // Both operands exact, one rounding: the correctly rounded result.
            let m = Double(mantissa)
            value = exponent < 0 ? m / Self.powersOfTen[-exponent] : m * Self.powersOfTen[exponent]
        } else {
            value = UnsafeBufferPointer(rebasing: bytes[start..<position]).withMemoryRebound(to: CChar.self) { text in
                var copy = Array(text) + [0]
                return strtod(&copy, nil)
            }
        }
        return negative ? -value : value
    }

    private static let powersOfTen: [Double] = (0...22).map { (0..<$0).reduce(1.0) { acc, _ in acc * 10 } }

    private func malformed(_ what: String) -> RequestError {
        .badRequest("malformed JSON at byte \(position): \(what)")
    }
}
