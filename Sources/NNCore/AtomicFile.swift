#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct FileError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }

    static func system(_ action: String, _ path: String) -> FileError {
        FileError("cannot \(action) \(path): \(String(cString: strerror(errno)))")
    }
}

/// Whole-file reads and atomic whole-file writes.
public enum AtomicFile {
    /// Throws unless `write(_:to:)` can create its temporary file beside `path` (the folder exists and is
    /// writable) and `path` is not a folder: checked before hours of training, not after.
    public static func checkWritable(_ path: String) throws {
        var info = stat()
        if stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR { throw FileError("cannot write \(path): it is a folder") }
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError.system("create", temporary) }
        close(fd)
        unlink(temporary)
    }

    /// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs the
    /// folder, so a reader sees the old file or the new one, never a torn one. `mode`: the new file's
    /// permissions (before the umask); a secret gets 0o600 from its first byte on.
    public static func write(_ bytes: UnsafeRawBufferPointer, to path: String, mode: mode_t = 0o644) throws {
        let temporary = "\(path).tmp-\(getpid())"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError.system("create", temporary) }
        var written = 0
        while written < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + written, bytes.count - written)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let error = FileError.system("write", temporary)
                close(fd); unlink(temporary)
                throw error
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            let error = FileError.system("fsync", temporary)
            close(fd); unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = FileError.system("rename \(temporary) to", path)
            unlink(temporary)
            throw error
        }
        let folder = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let dirfd = open(folder.isEmpty ? "/" : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 { fsync(dirfd); close(dirfd) }
    }

    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws {
        try bytes.withUnsafeBytes { try write($0, to: path, mode: mode) }
    }

    public static func write(_ text: String, to path: String, mode: mode_t = 0o644) throws {
        try write(Array(text.utf8), to: path, mode: mode)
    }

    /// The whole file, refusing files larger than `limit` bytes.
    public static func read(_ path: String, limit: Int = 1 << 32) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError.system("open", path) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileError.system("stat", path) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw FileError("\(path) is not a regular file") }
        let size = Int(info.st_size)
        guard size <= limit else { throw FileError("\(path) is \(size) bytes, more than the \(limit) allowed") }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while done < size {
                let n = Glibc.read(fd, buffer.baseAddress! + done, size - done)
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw FileError.system("read", path) }
                if n == 0 { break }
                done += n
            }
        }
        guard done == size else { throw FileError("\(path) shrank while being read") }
        return bytes
    }
}
