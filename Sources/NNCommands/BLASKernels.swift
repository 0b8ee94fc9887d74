import Foundation
import NNCore

/// OpenBLAS picks its kernels as it loads, before any code of ours runs, by the CPU models it knows; on a newer one
/// (Debian's 0.3.21 on recent Xeons) it falls back to generic kernels a third as fast. So each executable starts by
/// running itself again with OPENBLAS_CORETYPE naming kernels the CPU runs, unless that variable is already set: by
/// the user, or by this restart, which it then leaves to the programs this one starts (`nn launch`'s workers).
public enum BLASKernels {
    public static func restartWithBetterKernels() {
        guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil, let better = BLAS.betterKernels else { return }
        setenv("OPENBLAS_CORETYPE", better, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        let reason = String(cString: strerror(errno))
        FileHandle.standardError.write(Data("""
            warning: OpenBLAS runs its generic \(BLAS.kernels) kernels on this CPU, and starting again with \
            OPENBLAS_CORETYPE=\(better) failed (\(reason)); set that variable for about three times the speed\n
            """.utf8))
    }
}
