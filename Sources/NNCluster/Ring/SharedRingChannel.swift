import CNNSystem
import Foundation
import NNProtocol

/// Ring chunks between members on one host, through shared memory instead of their TCP link: the member that
/// takes chunks lays out a channel (`nn_ring_channel_*`) in a file in /dev/shm named after its ring endpoint
/// and its network namespace, and binds a datagram socket of the same name that writers ring after each chunk,
/// so that it can wait on that and on its ZeroMQ socket at once. A predecessor that finds both for its
/// successor's endpoint (so it runs on the same host, in the same network namespace) writes there. Each chunk
/// is one copy in and one copy out, and no I/O thread or kernel socket buffer carries it.
final class SharedRingChannel {
    private let memory: UnsafeMutableRawPointer
    private let size: Int
    private let inode: UInt64
    /// The reader's bound doorbell, or the writer's socket connected to it.
    private let bell: Int32
    let path: String
    /// The ring endpoint of the member that takes the chunks.
    let endpoint: String
    private let owner: Bool
    /// Slots a channel has: a member is rarely more than a chunk or two ahead of its successor.
    static let slots: UInt32 = 4

    /// The channel's file for `endpoint` (a ring's tcp:// endpoint) in this network namespace; nil without
    /// /dev/shm or a namespace to tell.
    static func path(for endpoint: String) -> String? {
        guard let namespace else { return nil }
        let name = (namespace + "-" + endpoint).map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
        return "/dev/shm/nn-ring-" + name
    }

    /// This process's network namespace ("net:[4026531840]"), when /dev/shm is there to share.
    private static let namespace: String? = FileManager.default.fileExists(atPath: "/dev/shm")
        ? try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net") : nil

    /// Lays out the channel a member takes chunks of at most `capacity` values on, replacing one left by a
    /// process that had the endpoint before.
    init(creatingFor endpoint: String, capacity: Int) throws {
        guard let path = Self.path(for: endpoint) else { throw ClusterError("no shared memory (/dev/shm) on this host") }
        self.path = path
        self.endpoint = endpoint
        owner = true
        size = nn_ring_channel_size(Self.slots, UInt32(capacity))
        Self.removeAbandoned()
        unlink(path)
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ClusterError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0, let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            unlink(path)
            throw ClusterError("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        memory = mapped
        var status = stat()
        fstat(fd, &status)
        inode = UInt64(status.st_ino)
        bell = Self.datagramSocket()
        let initialised = nn_ring_channel_init(memory, Self.slots, UInt32(capacity))
        guard initialised == 0, bell >= 0, Self.withBellAddress(path, { bind(bell, $0, $1) }) == 0 else {
            let reason = String(cString: strerror(initialised != 0 ? initialised : errno))
            if bell >= 0 { close(bell) }
            munmap(memory, size)
            unlink(path)
            throw ClusterError("cannot set up the shared ring channel \(path): \(reason)")
        }
    }

    /// Removes this user's channels in this network namespace whose member is gone without removing its file
    /// (killed): no process has their doorbell bound any more. Another namespace's doorbells are out of sight.
    private static func removeAbandoned() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm"),
              let prefix = path(for: "")?.dropFirst("/dev/shm/".count) else { return }
        let probe = datagramSocket()
        guard probe >= 0 else { return }
        defer { close(probe) }
        for name in names where name.hasPrefix(prefix) {
            let path = "/dev/shm/" + name
            var status = stat()
            guard stat(path, &status) == 0, status.st_uid == getuid() else { continue }
            if withBellAddress(path, { connect(probe, $0, $1) }) != 0 && errno == ECONNREFUSED { unlink(path) }
        }
    }

    /// Opens the channel of the member at `endpoint` if it runs on this host and takes chunks of `capacity`
    /// values; nil otherwise.
    init?(writingTo endpoint: String, capacity: Int) {
        guard let path = Self.path(for: endpoint) else { return nil }
        self.path = path
        self.endpoint = endpoint
        owner = false
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_uid == getuid() else { return nil }
        size = Int(status.st_size)
        inode = UInt64(status.st_ino)
        guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else { return nil }
        memory = mapped
        bell = Self.datagramSocket()
        guard nn_ring_channel_check(memory, size, UInt32(capacity)) == 0, bell >= 0,
              Self.withBellAddress(path, { connect(bell, $0, $1) }) == 0 else {
            if bell >= 0 { close(bell) }
            munmap(memory, size)
            return nil
        }
    }

    deinit {
        close(bell)
        munmap(memory, size)
        if owner { unlink(path) }
    }

    /// A non-blocking Unix datagram socket, or -1.
    private static func datagramSocket() -> Int32 {
        socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    /// The doorbell: an abstract socket (gone with its process, scoped to the network namespace) named as the file.
    private static func withBellAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let name = Array(path.utf8.suffix(MemoryLayout.size(ofValue: address.sun_path) - 1))
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw[0] = 0
            for (i, byte) in name.enumerated() { raw[i + 1] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + name.count)
        return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
    }

    /// A descriptor that becomes readable when a writer rang (the reader's).
    var doorbell: Int32 { bell }

    /// Still the channel its path names, with its reader there: false once the member that laid it out is gone
    /// or a new one replaced it.
    var isCurrent: Bool {
        var status = stat()
        guard stat(path, &status) == 0, UInt64(status.st_ino) == inode else { return false }
        return Self.withBellAddress(path, { connect(bell, $0, $1) }) == 0
    }

    /// Writes `values` as a chunk and rings; false when every slot is full (the reader is behind).
    func put(generation: UInt64, step: UInt64, phase: UInt32, values: ArraySlice<Float>) throws -> Bool {
        var header = nn_ring_slot_header(generation: generation, step: step, phase: phase, count: UInt32(values.count))
        let status = values.withUnsafeBufferPointer { nn_ring_channel_put(memory, &header, $0.baseAddress) }
        guard status != -1 else { throw ClusterError("a ring chunk of \(values.count) values does not fit the shared channel \(path)") }
        guard status >= 0 else { throw ClusterError("the shared channel \(path) cannot be locked") }
        guard status == 0 else { return false }
        var byte: UInt8 = 1
        _ = send(bell, &byte, 1, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
        return true
    }

    /// Waits up to `limit` for a chunk, spinning: a partner on another core usually sends one within a fraction
    /// of a millisecond, sooner than a sleeping reader would wake. True when one is there.
    func spin(for limit: Duration) -> Bool {
        let deadline = ContinuousClock.now + limit
        repeat {
            for _ in 0..<64 where nn_ring_channel_waiting(memory) != 0 { return true }
        } while ContinuousClock.now < deadline
        return false
    }

    /// Generation, step and phase of the oldest chunk written, if any (the reader's).
    func peek() -> (generation: UInt64, step: UInt64, phase: UInt32)? {
        var byte = (0 as UInt64, 0 as UInt64, 0 as UInt64, 0 as UInt64)
        while withUnsafeMutableBytes(of: &byte, { recv(bell, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
        var header = nn_ring_slot_header()
        guard nn_ring_channel_peek(memory, &header) != nil else { return nil }
        return (header.generation, header.step, header.phase)
    }

    /// Hands the values of the oldest chunk to `body` where they lie in the channel, then drops the chunk: the
    /// reader adds them into its vector or copies them there with no copy in between. Nil when there is none.
    func consume<T>(_ body: (UnsafeBufferPointer<Float>) throws -> T) rethrows -> T? {
        var header = nn_ring_slot_header()
        guard let values = nn_ring_channel_peek(memory, &header) else { return nil }
        defer { nn_ring_channel_pop(memory) }
        return try body(UnsafeBufferPointer(start: values, count: Int(header.count)))
    }

    /// The oldest chunk written, if any, copied out.
    func take() -> RingChunk? {
        guard let (generation, step, phase) = peek() else { return nil }
        return consume { RingChunk(generation: generation, step: step, phase: phase, values: Array($0)) }
    }
}
