import CSodium
import NNProtocol

/// The primitives of secure aggregation, all libsodium's: X25519 key pairs, pairwise seeds agreed by X25519 and
/// hashed with BLAKE2b, masks expanded from seeds by ChaCha20, and shares sealed with crypto_box.
enum MaskingCrypto {
    static let seedBytes = 32

    struct KeyPair {
        let publicKey: [UInt8]
        let secretKey: [UInt8]

        init() {
            precondition(sodium_init() >= 0)
            var pk = [UInt8](repeating: 0, count: Int(crypto_box_PUBLICKEYBYTES)), sk = [UInt8](repeating: 0, count: Int(crypto_box_SECRETKEYBYTES))
            crypto_box_keypair(&pk, &sk)
            publicKey = pk; secretKey = sk
        }

        /// The pair of a secret key that came back from shares; nil unless it yields `publicKey`.
        init?(secretKey: [UInt8], publicKey: [UInt8]) {
            var derived = [UInt8](repeating: 0, count: Int(crypto_box_PUBLICKEYBYTES))
            guard secretKey.count == derived.count, crypto_scalarmult_base(&derived, secretKey) == 0, derived == publicKey else { return nil }
            self.publicKey = publicKey; self.secretKey = secretKey
        }
    }

    static func randomSeed() -> [UInt8] {
        var seed = [UInt8](repeating: 0, count: seedBytes)
        randombytes_buf(&seed, seedBytes)
        return seed
    }

    /// The seed clients `a` and `b` share in `round`: BLAKE2b of their X25519 secret, the round and both ids;
    /// nil when the peer's key is a point of low order.
    static func pairSeed(secretKey: [UInt8], peerKey: [UInt8], round: UInt64, _ a: UInt32, _ b: UInt32) -> [UInt8]? {
        var shared = [UInt8](repeating: 0, count: Int(crypto_scalarmult_BYTES))
        guard peerKey.count == shared.count, crypto_scalarmult(&shared, secretKey, peerKey) == 0 else { return nil }
        let context = [round].flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
            + [min(a, b), max(a, b)].flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        let input = shared + context
        var seed = [UInt8](repeating: 0, count: seedBytes)
        crypto_generichash(&seed, seedBytes, input, UInt64(input.count), nil, 0)
        return seed
    }

    /// BLAKE2b-256 of `bytes`: a client's commitment to its self-mask seed.
    static func commitment(_ bytes: [UInt8]) -> [UInt8] {
        var hash = [UInt8](repeating: 0, count: seedBytes)
        crypto_generichash(&hash, seedBytes, bytes, UInt64(bytes.count), nil, 0)
        return hash
    }

    /// Adds (`sign` +1) or subtracts (−1) the mask that `seed` expands to, modulo 2^32, to `values`.
    static func apply(seed: [UInt8], sign: Int, to values: inout [UInt32]) {
        var mask = [UInt32](repeating: 0, count: values.count)
        let nonce = [UInt8](repeating: 0, count: Int(crypto_stream_chacha20_NONCEBYTES))
        mask.withUnsafeMutableBytes { _ = crypto_stream_chacha20($0.baseAddress!, UInt64($0.count), nonce, seed) }
        if sign > 0 {
            for i in values.indices { values[i] &+= UInt32(littleEndian: mask[i]) }
        } else {
            for i in values.indices { values[i] &-= UInt32(littleEndian: mask[i]) }
        }
    }

    /// `plaintext` sealed for the holder of `receiverKey` by the holder of `senderSecret`: a random nonce, then
    /// the authenticated ciphertext.
    static func seal(_ plaintext: [UInt8], to receiverKey: [UInt8], from senderSecret: [UInt8]) -> [UInt8]? {
        var nonce = [UInt8](repeating: 0, count: Int(crypto_box_NONCEBYTES))
        randombytes_buf(&nonce, nonce.count)
        var sealed = [UInt8](repeating: 0, count: plaintext.count + Int(crypto_box_MACBYTES))
        guard receiverKey.count == Int(crypto_box_PUBLICKEYBYTES),
              crypto_box_easy(&sealed, plaintext, UInt64(plaintext.count), nonce, receiverKey, senderSecret) == 0 else { return nil }
        return nonce + sealed
    }

    /// The plaintext of `sealed`, or nil when it was not sealed by `senderKey`'s holder for `receiverSecret`'s.
    static func open(_ sealed: [UInt8], from senderKey: [UInt8], to receiverSecret: [UInt8]) -> [UInt8]? {
        let nonceBytes = Int(crypto_box_NONCEBYTES), macBytes = Int(crypto_box_MACBYTES)
        guard sealed.count >= nonceBytes + macBytes, senderKey.count == Int(crypto_box_PUBLICKEYBYTES) else { return nil }
        let nonce = Array(sealed[..<nonceBytes]), ciphertext = Array(sealed[nonceBytes...])
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count - macBytes)
        guard crypto_box_open_easy(&plaintext, ciphertext, UInt64(ciphertext.count), nonce, senderKey, receiverSecret) == 0 else { return nil }
        return plaintext
    }
}
