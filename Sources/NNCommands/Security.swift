import ArgumentParser
import Foundation
import NNCluster

/// `nn keygen`: a CURVE key pair for a coordinator or a worker.
public struct Keygen: ParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        abstract: "Make a CURVE key pair for an encrypted, authenticated run.",
        discussion: """
            Writes DIR/NAME.key (the public key, to hand to the other side) and DIR/NAME.key_secret (mode 0600, \
            to keep), in the certificate format of czmq and pyzmq. A coordinator takes its secret key with --key \
            and its workers' public keys with --allow; a worker takes its secret key with --key and the \
            coordinator's public key with --server-key.
            """)

    @Option(help: "Folder to write the key files into (created if missing).", completion: .directory)
    var out: String

    @Option(help: "File name of the pair.")
    var name: String = "nn"

    public func validate() throws {
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else { throw ValidationError("--name '\(name)' is not a file name") }
    }

    public func run() throws {
        let (publicPath, secretPath) = try CurveKeyPair.generate().write(to: out, name: name)
        print("public key: \(publicPath)\nsecret key: \(secretPath) (keep it; mode 0600)")
    }
}

/// The coordinator's CURVE options.
struct ServerSecurityOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The coordinator's secret key (from `nn keygen`): encrypt the run and admit only --allow keys.", valueName: "file"),
            completion: .file())
    var key: String?

    @Option(help: ArgumentHelp("Worker keys to admit: a folder of .key files, or a file with one key a line, optionally followed by the client ids that key hosts (KEY 0-49).", valueName: "path"),
            completion: .file())
    var allow: String?

    @Flag(help: "Bind beyond loopback without encryption or authentication (only on a network you control).")
    var insecure = false

    func validate() throws {
        guard (key == nil) == (allow == nil) else { throw ValidationError("--key and --allow go together: the key encrypts, the allowlist admits") }
        if insecure, key != nil { throw ValidationError("--insecure contradicts --key") }
    }

    /// The keys and allowlist, loaded and checked; nil for a plain run.
    func load() throws -> ServerSecurity? {
        guard let key, let allow else { return nil }
        return ServerSecurity(keys: try CurveKeyPair.load(secret: key), allowlist: try Allowlist.load(allow))
    }
}

/// A worker's CURVE options.
struct ClientSecurityOptions: ParsableArguments {
    @Option(help: ArgumentHelp("This worker's secret key (from `nn keygen`).", valueName: "file"), completion: .file())
    var key: String?

    @Option(help: ArgumentHelp("The coordinator's public key (its .key file).", valueName: "file"), completion: .file())
    var serverKey: String?

    func validate() throws {
        guard (key == nil) == (serverKey == nil) else { throw ValidationError("--key and --server-key go together") }
    }

    func load() throws -> ClientSecurity? {
        guard let key, let serverKey else { return nil }
        return ClientSecurity(keys: try CurveKeyPair.load(secret: key), serverKey: try CurvePublicKey.load(serverKey))
    }
}
