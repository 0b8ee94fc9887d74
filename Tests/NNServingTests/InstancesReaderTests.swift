import Foundation
import NNCore
import Testing
@testable import NNServing

@Suite struct InstancesReaderTests {
    func read(_ text: String, width: Int) throws -> (values: [Float], count: Int) {
        try Array(text.utf8).withUnsafeBytes { try InstancesReader.read($0, width: width) }
    }

    /// Every number form JSON allows converts as Foundation's JSON reader (double, correctly rounded) then float32 would.
    @Test func numbersMatchFoundation() throws {
        var rng = SeededRandom(seed: 7, stream: 1)
        /// Number `k` of the forms below for a uniform `u` in [0, 1).
        func form(_ k: Int, _ u: Float) -> String {
            switch k {
            case 0: "\(Int(u * 256))"
            case 1: String(format: "%.4f", Double(u))
            case 2: "\(Double(u))"
            case 3: "\(u)"
            case 4: String(format: "%.3e", Double(u) * 255)
            case 5: String(format: "%.25f", Double(u))  // more digits than a UInt64 holds
            case 6: "0.\(String(repeating: "0", count: 30))\(Int(u * 1000) + 1)"  // beyond 10^-22
            case 7: "\(Int(u * 200))E-2"
            case 8: "-0"
            case 9: "1e0"
            case 10: "0.1"
            default: "255.0000000000000000000001"
            }
        }
        let width = 40
        for _ in 0..<200 {
            let rows = (0..<3).map { _ in (0..<width).map { _ in form(Int(rng.nextUnitFloat() * 12), rng.nextUnitFloat()) } }
            let body = "{ \"instances\" :\n [" + rows.map { "[" + $0.joined(separator: " , ") + "]" }.joined(separator: ",\t") + "] }\r\n"
            let (values, count) = try read(body, width: width)
            #expect(count == 3)
            let reference = try JSONSerialization.jsonObject(with: Data(body.utf8)) as! [String: [[NSNumber]]]
            for (r, row) in reference["instances"]!.enumerated() {
                let floats = row.map { Float($0.doubleValue) }
                let scaled = floats.contains { $0 > 1 } ? floats.map { $0 * (1 / 255 as Float) } : floats
                #expect(Array(values[(r * width)..<((r + 1) * width)]) == scaled, "row \(r) of \(body)")
            }
        }
    }

    @Test func scalesRowsGivenIn0To255() throws {
        let (values, count) = try read(#"{"instances": [[0, 0.5, 1], [0, 255, 51]]}"#, width: 3)
        #expect(count == 2)
        #expect(values == [0, 0.5, 1, 0, 1, 51 * (1 / 255 as Float)])
    }

    @Test func refusesWhatIsNotAnInstancesBody() {
        let cases: [(String, String)] = [
            (#"{"instances": [[0, 1], [0]]}"#, "instance 1 has 1 values"),
            (#"{"instances": [[0, 1, 1]]}"#, "more than 2 values"),
            (#"{"instances": [[0, -1]]}"#, "must lie in 0…1 or 0…255"),
            (#"{"instances": [[0, 300]]}"#, "must lie in 0…1 or 0…255"),
            (#"{"instances": [[0, 1e400]]}"#, "must lie in"),
            (#"{"instances": [[0, NaN]]}"#, "JSON has no NaN"),
            (#"{"instances": [[0, "1"]]}"#, "not a number"),
            (#"{"instances": [[0, 01]]}"#, "leading zero"),
            (#"{"instances": [[0, 1.]]}"#, "no digits after '.'"),
            (#"{"instances": [[0, 1e]]}"#, "no digits in its exponent"),
            (#"{"instances": [[0, +1]]}"#, "expected a number"),
            (#"{"instances": [[0, 1]]} x"#, "unexpected data after"),
            (#"{"instances": [[0, 1]], "instances": [[0, 1]]}"#, "given twice"),
            (#"{"inputs": [[0, 1]]}"#, "unknown key"),
            (#"{"instances": []}"#, "is empty"),
            (#"{}"#, "expected a key"),
            (#"[[0, 1]]"#, "a JSON object"),
            (#"{"instances": [[0 1]]}"#, "expected ',' or ']'"),
            (#"{"inst\u0061nces": [[0, 1]]}"#, "unsupported character"),
        ]
        for (body, fragment) in cases {
            do {
                _ = try read(body, width: 2)
                Issue.record("accepted \(body)")
            } catch let error as RequestError {
                #expect(error.status == 400 && error.description.contains(fragment), "\(body): \(error)")
            } catch {
                Issue.record("\(body): \(error)")
            }
        }
        let many = "{\"instances\": [" + Array(repeating: "[0, 1]", count: InstancesReader.maximumInstances + 1).joined(separator: ",") + "]}"
        #expect(throws: RequestError.tooLarge("more than \(InstancesReader.maximumInstances) instances in one request")) { try read(many, width: 2) }
    }

    /// No prefix of a valid body is accepted or crashes the reader.
    @Test func everyTruncationIsRefused() {
        let body = #"{"instances": [[0.25, 1e-2, 255], [0, 12.5E+1, -0.0]]}"#
        for end in 0..<body.utf8.count {
            #expect(throws: RequestError.self) { try read(String(decoding: Array(body.utf8)[..<end], as: UTF8.self), width: 3) }
        }
    }
}
