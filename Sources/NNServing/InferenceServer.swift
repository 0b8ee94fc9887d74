import Dispatch
import Foundation
import Logging
import Metrics
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix

/// `nn serve`'s HTTP server: predictions from JSON pixels or an uploaded picture, the model's description, a health
/// check, the draw-a-digit page and the Prometheus metrics.
///
/// SwiftNIO's HTTP/1.1 server pipeline (keep-alive, pipelining, malformed requests answered 400), with each request
/// answered on the event loop that read it. A prediction is tens of microseconds of CPU work, so a hand-off to
/// another thread and back (as Hummingbird's async handlers do) costs more than the model: single-image requests/s
/// went from 13,600–17,200 (p99 1.6–4.3 ms) through Hummingbird 2 to 26,700–28,600 (p99 0.7 ms) here. Batches are
/// bounded (1024 instances), so no request holds a loop for long.
/// SIGHUP reloads the checkpoint. SIGTERM or SIGINT: the listening socket closes, idle connections close, requests
/// in flight are answered, then `run` returns (NIOExtras' quiescing helper).
public struct InferenceServer: Sendable {
    public struct Settings: Sendable {
        public var host: String
        public var port: Int
        /// Request bodies above this are refused unread (the Content-Length says so) or as soon as they pass it.
        public var bodyLimit: Int
        public init(host: String, port: Int, bodyLimit: Int = 8 << 20) {
            self.host = host
            self.port = port
            self.bodyLimit = bodyLimit
        }
    }

    let store: ModelStore
    let settings: Settings
    let logger: Logger
    let metrics: @Sendable () -> [UInt8]

    /// `metrics` renders the process's metrics in Prometheus's text format for `GET /metrics`.
    public init(store: ModelStore, settings: Settings, logger: Logger, metrics: @escaping @Sendable () -> [UInt8]) {
        self.store = store
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
    }

    /// Serves until SIGTERM or SIGINT, then finishes the requests in flight and returns.
    public func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let quiesce = ServerQuiescingHelper(group: group)
        let routes = Routes(store: store, bodyLimit: settings.bodyLimit, logger: logger, metrics: metrics)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel)) }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPConnection(routes: routes))
                }
            }
            .bind(host: settings.host, port: settings.port).get()
        let port = channel.localAddress?.port ?? settings.port
        logger.notice("serving \(store.current.spec.description) from \(store.path) at http://\(settings.host):\(port)/ (POST /v1/predict, GET /v1/model, /healthz, /metrics)")

        let stopped = group.next().makePromise(of: Void.self)
        let sources = [
            Self.on(SIGHUP) { [store] in store.reloadIfChanged(force: true, reason: "SIGHUP") },
            Self.on(SIGTERM) { [logger] in
                logger.notice("received SIGTERM: answering requests in flight, then stopping")
                quiesce.initiateShutdown(promise: stopped)
            },
            Self.on(SIGINT) { [logger] in
                logger.notice("received SIGINT: answering requests in flight, then stopping")
                quiesce.initiateShutdown(promise: stopped)
            },
        ]
        let watcher = Task { [store] in await store.watch() }
        try await stopped.futureResult.get()
        watcher.cancel()
        sources.forEach { $0.cancel() }
        logger.notice("stopped")
    }

    /// Runs `action` on each arrival of `signal` instead of the default action, until the source is cancelled.
    private static func on(_ signal: Int32, _ action: @escaping @Sendable () -> Void) -> DispatchSourceSignal {
        Foundation.signal(signal, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
        source.setEventHandler(handler: action)
        source.resume()
        return source
    }
}

/// A response before it is written: status, content type and body.
struct Reply {
    var status: HTTPResponseStatus
    var type: String
    var body: [UInt8]

    static func json(_ status: HTTPResponseStatus, _ body: [UInt8]) -> Reply { Reply(status: status, type: "application/json", body: body) }

    static func error(_ status: HTTPResponseStatus, _ message: String) -> Reply {
        let body = (try? JSONSerialization.data(withJSONObject: ["error": message, "status": Int(status.code)] as [String: Any], options: [.sortedKeys])) ?? Data()
        return .json(status, Array(body) + [0x0A])
    }
}

/// One connection: collects a request's body up to the limit, answers it, keeps the connection for the next.
private final class HTTPConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let routes: Routes
    private var bodyLimit: Int { routes.bodyLimit }
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var refused = false
    private var started = ContinuousClock.now

    init(routes: Routes) { self.routes = routes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            guard !refused else { return }
            started = .now
            head = request
            body = nil
            if let length = request.headers.first(name: "content-length").flatMap(Int.init), length > bodyLimit {
                refuse(context, "the body is \(length) bytes; the limit is \(bodyLimit)")
            }
        case .body(var part):
            guard !refused else { return }
            if body == nil {
                body = part
            } else {
                body!.writeBuffer(&part)
            }
            if body!.readableBytes > bodyLimit { refuse(context, "the body is over the limit of \(bodyLimit) bytes") }
        case .end:
            guard let request = head, !refused else { return }
            head = nil
            let reply = routes.answer(request, body: body ?? ByteBuffer())
            body = nil
            write(reply, for: request, context: context)
        }
    }

    /// An oversized body is answered at once, without storing the rest of it. The connection then stops sending
    /// and reads what the client still sends into the void for a few seconds: closing at once would make the
    /// kernel reset the connection, and a client still sending would lose the answer.
    private func refuse(_ context: ChannelHandlerContext, _ message: String) {
        guard let request = head else { return }
        refused = true
        head = nil
        body = nil
        write(.error(.payloadTooLarge, message), for: request, context: context)
    }

    private func write(_ reply: Reply, for request: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: reply.type)
        headers.add(name: "content-length", value: String(reply.body.count))
        let keepAlive = request.isKeepAlive && !refused
        if !keepAlive { headers.add(name: "connection", value: "close") }
        var buffer = context.channel.allocator.buffer(capacity: reply.body.count)
        buffer.writeBytes(reply.body)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: reply.status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlushPromise(wrapOutboundOut(.end(nil)))
        if refused {
            let channel = context.channel
            done.futureResult.whenComplete { _ in
                channel.close(mode: .output, promise: nil)
                channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
            }
        } else if !keepAlive {
            let channel = context.channel
            done.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
        routes.record(request, status: reply.status, since: started)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

extension ChannelHandlerContext {
    fileprivate func writeAndFlushPromise(_ data: NIOAny) -> EventLoopPromise<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        writeAndFlush(data, promise: promise)
        return promise
    }
}
