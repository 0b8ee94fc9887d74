/// What was wrong with a request, as the client is told it: an HTTP status and a sentence.
public enum RequestError: Error, Equatable, CustomStringConvertible {
    case badRequest(String)
    case tooLarge(String)
    case unsupportedMediaType(String)
    case unprocessable(String)

    public var status: Int {
        switch self {
        case .badRequest: 400
        case .tooLarge: 413
        case .unsupportedMediaType: 415
        case .unprocessable: 422
        }
    }

    public var description: String {
        switch self {
        case let .badRequest(m), let .tooLarge(m), let .unsupportedMediaType(m), let .unprocessable(m): m
        }
    }
}
