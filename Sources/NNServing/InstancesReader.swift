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
        values.reserveCapacity(64 * width)
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
        let bytes = self.bytes, end = bytes.count
        var i = Self.skipSpace(bytes, position), n = 0
        if i < end && bytes[i] == UInt8(ascii: "]") {
            i += 1
        } else {
            while true {
                i = Self.skipSpace(bytes, i)
                guard n < width else {
                    throw RequestError.badRequest("instance \(index) has more than \(width) values; the model takes \(width)")
                }
                values.append(Float(try Self.number(bytes, &i, instance: index)))
                n += 1
                i = Self.skipSpace(bytes, i)
                guard i < end else { throw Self.malformed(at: i, "expected ',' or ']' in instance \(index)") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; break }
                throw Self.malformed(at: i, "expected ',' or ']' in instance \(index)")
            }
        }
        position = i
        guard n == width else { throw RequestError.badRequest("instance \(index) has \(n) values; the model takes \(width)") }
        var largest: Float = 0
        for k in start..<values.count {
            let v = values[k]
            guard v >= 0 && v <= 255 else {
                throw RequestError.badRequest("instance \(index), value \(k - start) is \(v): values must lie in 0…1 or 0…255")
            }
            largest = max(largest, v)
        }
        if largest > 1 {
            let scale: Float = 1 / 255
            for k in start..<values.count { values[k] *= scale }
        }
    }

    // MARK: Grammar

    private var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func skipSpace() { position = Self.skipSpace(bytes, position) }

    @inline(__always)
    private static func skipSpace(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int {
        var i = start
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x0A, 0x0D, 0x09: i += 1
            default: return i
            }
        }
        return i
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
    private static func number(_ bytes: UnsafeBufferPointer<UInt8>, _ i: inout Int, instance: Int) throws -> Double {
        let start = i, end = bytes.count
        @inline(__always) func digit(_ i: Int) -> UInt64? {
            guard i < end else { return nil }
            let d = bytes[i] &- 0x30
            return d < 10 ? UInt64(d) : nil
        }
        let negative = i < end && bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        guard let first = digit(i) else {
            let b = i < end ? bytes[i] : 0
            if [UInt8(ascii: "\""), UInt8(ascii: "["), UInt8(ascii: "{"), UInt8(ascii: "n"), UInt8(ascii: "t"), UInt8(ascii: "f")].contains(b) {
                throw RequestError.badRequest("instance \(instance) holds something that is not a number at byte \(i)")
            }
            throw malformed(at: i, b == UInt8(ascii: "N") || b == UInt8(ascii: "I") ? "expected a number (JSON has no NaN or Infinity)" : "expected a number")
        }
        // Up to 19 significant digits fit the mantissa exactly; a number with more goes to strtod.
        var mantissa: UInt64 = 0, significant = 0, exponent = 0
        i += 1
        if first == 0 {
            if digit(i) != nil { throw malformed(at: i, "a number with a leading zero") }
        } else {
            mantissa = first
            significant = 1
            while let d = digit(i) {
                if significant < 19 { mantissa = mantissa &* 10 &+ d; significant += 1 } else { exponent += 1; significant += 1 }
                i += 1
            }
        }
        if i < end && bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard digit(i) != nil else { throw malformed(at: i, "a number with no digits after '.'") }
            while let d = digit(i) {
                if significant < 19 {
                    mantissa = mantissa &* 10 &+ d
                    exponent -= 1
                    if mantissa != 0 { significant += 1 }
                } else {
                    significant += 1
                }
                i += 1
            }
        }
        if i < end && (bytes[i] | 0x20) == UInt8(ascii: "e") {
            i += 1
            var sign = 1
            if i < end && (bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-")) { sign = bytes[i] == UInt8(ascii: "-") ? -1 : 1; i += 1 }
            guard digit(i) != nil else { throw malformed(at: i, "a number with no digits in its exponent") }
            var e = 0
            while let d = digit(i) { e = min(e * 10 + Int(d), 100_000); i += 1 }
            exponent += sign * e
        }
        let value: Double
        if significant < 19 && mantissa < 1 << 53 && exponent >= -22 && exponent <= 22 {
            // Both operands exact, one rounding: the correctly rounded result.
            let m = Double(mantissa)
            value = exponent < 0 ? m / powerOfTen(-exponent) : m * powerOfTen(exponent)
        } else {
            var text = Array(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[start..<i])) + [0]
            value = text.withUnsafeMutableBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { strtod($0.baseAddress!, nil) }
            }
            return value
        }
        return negative ? -value : value
    }

    /// 10ⁿ for n in 0…22, each exact in a Double (a switch, not a global table: no lazy-initialisation check per number).
    @inline(__always)
    private static func powerOfTen(_ n: Int) -> Double {
        switch n {
        case 0: 1e0; case 1: 1e1; case 2: 1e2; case 3: 1e3; case 4: 1e4; case 5: 1e5; case 6: 1e6; case 7: 1e7
        case 8: 1e8; case 9: 1e9; case 10: 1e10; case 11: 1e11; case 12: 1e12; case 13: 1e13; case 14: 1e14
        case 15: 1e15; case 16: 1e16; case 17: 1e17; case 18: 1e18; case 19: 1e19; case 20: 1e20; case 21: 1e21
        default: 1e22
        }
    }

    private func malformed(_ what: String) -> RequestError { Self.malformed(at: position, what) }

    private static func malformed(at position: Int, _ what: String) -> RequestError {
        .badRequest("malformed JSON at byte \(position): \(what)")
    }
}
