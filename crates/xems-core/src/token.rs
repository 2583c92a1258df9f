//! Session tokens and record addresses.
//!
//! A token is 33 bytes rendered as 44 URL- and cookie-safe base64 characters:
//! one routing byte, then 256 bits from the OS CSPRNG. The routing byte lets a
//! store keep every token of one session in the same shard, so a rotation
//! touches one lock; it carries no secret.

use std::fmt;

use base64::Engine as _;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Characters in a minted token.
pub const TOKEN_LEN: usize = 44;

/// Random bytes in a minted token.
pub const TOKEN_RANDOM_BYTES: usize = 32;

/// The longest accepted address (token or caller key), in bytes.
pub const MAX_KEY_LEN: usize = 512;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A session token: the bearer credential of a session.
///
/// The text is zeroized on drop, compared in constant time and never printed
/// by `Debug`; reading it takes the explicit [`expose`](Token::expose).
///
/// ```
/// use xems_core::Token;
///
/// let t = Token::mint(7);
/// assert_eq!(t.expose().len(), 44);
/// assert_eq!(xems_core::route_of(t.expose()), 7);
/// assert_eq!(format!("{t:?}"), "Token(<redacted>)");
/// ```
#[derive(Clone)]
pub struct Token(Zeroizing<String>);

impl Token {
    /// Mints a new token with the given routing byte.
    pub fn mint(route: u8) -> Self {
        let mut raw = Zeroizing::new([0u8; 1 + TOKEN_RANDOM_BYTES]);
        raw[0] = route;
        crate::rng::fill(&mut raw[1..]);
        // Encode into a stack buffer: `encode_string` would zero a 1 KiB
        // scratch buffer on every call.
        let mut text = Zeroizing::new([0u8; TOKEN_LEN]);
        let n = B64.encode_slice(&raw[..], &mut text[..]).expect("33 bytes encode to 44 characters");
        debug_assert_eq!(n, TOKEN_LEN);
        let text = std::str::from_utf8(&text[..]).expect("base64 is ASCII");
        Token(Zeroizing::new(text.to_owned()))
    }

    /// Wraps a token received from a client (a cookie, a header, a protocol
    /// line) so it is handled as a secret from here on.
    pub fn from_string(text: String) -> Self {
        Token(Zeroizing::new(text))
    }

    /// The token text, to put in a cookie or a response. Every call site is a
    /// place where the credential leaves the store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Token {}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The routing byte of an address: the first decoded byte of a token-shaped
/// address (44 characters, as [`Token::mint`] makes, or 66, as the embedded
/// engine's selector tokens), otherwise a stable hash of the address. A pure function of the
/// text, so every operation on one address routes the same way, across
/// processes and restarts.
pub fn route_of(address: &str) -> u8 {
    let b = address.as_bytes();
    if (b.len() == TOKEN_LEN || b.len() == 66)
        && let (Some(hi), Some(lo)) = (b64_value(b[0]), b64_value(b[1]))
    {
        return (hi << 2) | (lo >> 4);
    }
    // FNV-1a: not keyed, and it need not be: it only spreads caller keys over
    // shards, while the index inside a shard uses the keyed digest.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in b {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h ^ (h >> 32) ^ (h >> 16) ^ (h >> 8)) as u8
}

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Checks an address (token or caller key): 1 to [`MAX_KEY_LEN`] bytes.
///
/// # Errors
///
/// [`crate::Error::InvalidKey`] naming the problem.
pub fn validate_key(key: &str) -> Result<(), crate::Error> {
    if key.is_empty() {
        return Err(crate::Error::InvalidKey("empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(crate::Error::InvalidKey("longer than 512 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_route_and_differ() {
        xems_testkit::logs::capture();
        for route in [0u8, 1, 63, 64, 200, 255] {
            let t = Token::mint(route);
            assert_eq!(route_of(t.expose()), route);
            assert!(t.expose().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            assert_ne!(t, Token::mint(route));
        }
    }

    #[test]
    fn caller_keys_route_stably() {
        xems_testkit::logs::capture();
        let k = "9f0c1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f50617";
        assert_eq!(route_of(k), route_of(k));
        let spread: std::collections::HashSet<u8> = (0..2000).map(|i| route_of(&format!("user:{i}"))).collect();
        assert!(spread.len() > 200, "caller keys should spread over routes: {}", spread.len());
    }

    #[test]
    fn key_validation() {
        xems_testkit::logs::capture();
        assert!(validate_key("").is_err());
        assert!(validate_key(&"k".repeat(513)).is_err());
        assert!(validate_key(&"k".repeat(512)).is_ok());
    }
}
