import CGFShare

/// Shamir's t-of-n secret sharing over GF(2^8), byte by byte (libgfshare), its random coefficients from libsodium.
enum SecretSharing {
    /// Set before any use: the library calls its random source (a null pointer until set) when it sets up to
    /// combine as well as to split.
    private static let randomSource: Void = nn_gfshare_use_sodium()

    /// Shares numbered 1…`count` of `secret`: any `threshold` of them give it back, fewer tell nothing about it.
    static func split(_ secret: [UInt8], count: Int, threshold: Int) -> [[UInt8]] {
        precondition(threshold >= 2 && threshold <= count && count <= 255, "\(threshold) of \(count) shares")
        _ = randomSource
        var numbers = (1...count).map { UInt8($0) }
        let context = gfshare_ctx_init_enc(&numbers, UInt32(count), UInt8(threshold), UInt32(secret.count))!
        defer { gfshare_ctx_free(context) }
        var copy = secret
        gfshare_ctx_enc_setsecret(context, &copy)
        return (0..<count).map { index in
            var share = [UInt8](repeating: 0, count: secret.count)
            gfshare_ctx_enc_getshare(context, UInt8(index), &share)
            return share
        }
    }

    /// The secret from shares with distinct numbers in 1…255 (at least the threshold of them, or the result is
    /// unrelated to the secret).
    static func combine(_ shares: [(number: UInt8, share: [UInt8])]) -> [UInt8] {
        precondition(!shares.isEmpty && Set(shares.map(\.number)).count == shares.count && !shares.contains { $0.number == 0 })
        _ = randomSource
        let length = shares[0].share.count
        var numbers = shares.map(\.number)
        let context = gfshare_ctx_init_dec(&numbers, UInt32(shares.count), UInt32(length))!
        defer { gfshare_ctx_free(context) }
        for (index, entry) in shares.enumerated() {
            var share = entry.share
            gfshare_ctx_dec_giveshare(context, UInt8(index), &share)
        }
        var secret = [UInt8](repeating: 0, count: length)
        gfshare_ctx_dec_extract(context, &secret)
        return secret
    }
}
