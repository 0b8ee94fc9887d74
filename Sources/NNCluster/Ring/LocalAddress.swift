import Foundation

/// The address of this machine that packets to `endpoint`'s host leave from (a UDP socket's connect picks the
/// route without sending anything): what a worker tells its ring peers, who reach the coordinator the same way.
/// 127.0.0.1 for endpoints that are not TCP.
public enum LocalAddress {
    public static func towards(_ endpoint: String) throws -> String {
        guard endpoint.hasPrefix("tcp://") else { return "127.0.0.1" }
        var rest = endpoint.dropFirst("tcp://".count)
        if let semicolon = rest.firstIndex(of: ";") { rest = rest[rest.index(after: semicolon)...] }  // "source;destination"
        guard let colon = rest.lastIndex(of: ":") else { throw ClusterError("\(endpoint) names no port") }
        let host = String(rest[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, "9", &hints, &found) == 0, let info = found else { throw ClusterError("cannot resolve \(host)") }
        defer { freeaddrinfo(found) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw ClusterError("cannot open a socket to find the address towards \(host)") }
        defer { close(fd) }
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { throw ClusterError("no route to \(host)") }
        var local = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let named = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { address -> Bool in
                getsockname(fd, address, &length) == 0
                    && getnameinfo(address, length, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0
            }
        }
        guard named else { throw ClusterError("cannot tell this machine's address towards \(host)") }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
