import Foundation

/// A value shared between a test and the threads or processes it watches.
public final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    public init(_ value: T) { self.value = value }
    public func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    public func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
    public func update(_ body: (inout T) -> Void) { lock.lock(); body(&value); lock.unlock() }
}

/// A fresh, empty folder under the system temporary directory, named after the test.
public func temporaryDirectory(_ name: String = #function) -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("nn-tests-\(getpid())-\(name.filter(\.isLetter))-\(UInt32.random(in: 0...UInt32.max))").path
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
