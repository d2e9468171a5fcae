//! Operator public keys as policies write them (`ed25519:<base64>`).

/// The prefix of an operator public key in a policy.
pub const ED25519_PREFIX: &str = "ed25519:";

/// The 32 bytes of an `ed25519:<base64>` public key, if it is one. (Whether
/// the bytes are a usable curve point is the runtime's check.)
pub fn public_key_bytes(text: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let encoded = text.strip_prefix(ED25519_PREFIX)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    bytes.try_into().ok()
}
