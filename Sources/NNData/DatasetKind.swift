import Foundation
import NNCore

/// The data sets `nn` knows: their files, checksums, mirrors and where they are looked for.
public enum DatasetKind: String, CaseIterable, Sendable {
    case mnist
    case fashionMNIST = "fashion-mnist"

    public struct File: Sendable {
        public let name: String
        /// SHA-256 of the uncompressed file.
        public let sha256: String
    }

    public var trainImages: File { files[0] }
    public var trainLabels: File { files[1] }
    public var testImages: File { files[2] }
    public var testLabels: File { files[3] }

    public var files: [File] {
        switch self {
        case .mnist:
            return [
                File(name: "train-images-idx3-ubyte", sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
                File(name: "train-labels-idx1-ubyte", sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
                File(name: "t10k-images-idx3-ubyte", sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
                File(name: "t10k-labels-idx1-ubyte", sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
            ]
        case .fashionMNIST:
            return [
                File(name: "train-images-idx3-ubyte", sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
                File(name: "train-labels-idx1-ubyte", sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
                File(name: "t10k-images-idx3-ubyte", sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
                File(name: "t10k-labels-idx1-ubyte", sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
            ]
        }
    }

    /// Public mirrors of the gzipped files, tried in order.
    public var mirrors: [String] {
        switch self {
        case .mnist:
            return [
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ]
        case .fashionMNIST:
            return ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
        }
    }

    public var classNames: [String] {
        switch self {
        case .mnist: return (0..<10).map(String.init)
        case .fashionMNIST: return ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
        }
    }

    /// The environment variable that names this data set's folder.
    public var environmentVariable: String {
        switch self {
        case .mnist: return "NN_MNIST_DIR"
        case .fashionMNIST: return "NN_FASHION_MNIST_DIR"
        }
    }

    /// `$NN_MNIST_DIR` (or `$NN_FASHION_MNIST_DIR`), else `$XDG_DATA_HOME/nn/mnist` (`~/.local/share/nn/mnist`);
    /// Fashion-MNIST defaults to where Debian's `dataset-fashion-mnist` installs it.
    public func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let dir = environment[environmentVariable], !dir.isEmpty { return dir }
        switch self {
        case .mnist:
            let base = environment["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 }
                ?? (environment["HOME"] ?? NSHomeDirectory()) + "/.local/share"
            return base + "/nn/mnist"
        case .fashionMNIST:
            return "/usr/share/datasets/fashion-mnist"
        }
    }

    /// The path of `file` in `directory`: the raw file, or else its `.gz`.
    public func locate(_ file: File, in directory: String) -> String? {
        let raw = directory + "/" + file.name
        for candidate in [raw, raw + ".gz"] where FileManager.default.fileExists(atPath: candidate) { return candidate }
        return nil
    }

    /// Training and test sets from `directory`.
    public func load(from directory: String) throws -> (train: Dataset, test: Dataset) {
        let missing = files.filter { locate($0, in: directory) == nil }.map(\.name)
        guard missing.isEmpty else {
            throw DataError("\(rawValue) is not in \(directory): missing \(missing.joined(separator: ", ")) (raw or .gz). "
                + "Run `nn data fetch --dataset \(rawValue) --to \(directory)`, or pass --data DIR / set \(environmentVariable).")
        }
        func path(_ f: File) -> String { locate(f, in: directory)! }
        let train = try Dataset(name: "\(rawValue) train", imagesPath: path(trainImages), labelsPath: path(trainLabels), classes: classNames.count)
        let test = try Dataset(name: "\(rawValue) test", imagesPath: path(testImages), labelsPath: path(testLabels), classes: classNames.count)
        guard train.rows == test.rows, train.columns == test.columns else {
            throw DataError("\(directory): training images are \(train.rows)×\(train.columns) but test images are \(test.rows)×\(test.columns)")
        }
        return (train, test)
    }
}
