//! Minted tokens carry a 256-bit random verifier (OWASP asks for at least
//! 64 bits of entropy): 66 URL-safe characters decoding to the routing
//! byte, a 16-byte encrypted selector and 32 random bytes.

use base64::Engine as _;
use xems_core::{CreateOptions, ResolveOptions, SessionStore};
use xems_engine::Engine;

#[tokio::test]
async fn tokens_carry_a_256_bit_random_verifier() {
    xems_testkit::logs::capture();
    let engine = Engine::builder().audit_log(false).sweep_interval(None).build().unwrap();
    const N: usize = 4000;
    let mut verifiers = std::collections::HashSet::new();
    let mut ones = [0usize; 256];
    for i in 0..N {
        let created = engine.create("s", b"v", CreateOptions::new()).await.unwrap();
        // Half of them through a rotation: successors are minted the same way.
        let token = if i % 2 == 0 {
            created.token
        } else {
            let r = engine.resolve("s", created.token.expose(), ResolveOptions::rotating()).await.unwrap().unwrap();
            r.token.unwrap()
        };
        let text = token.expose();
        assert_eq!(text.len(), 66);
        assert!(text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{text}");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap();
        assert_eq!(raw.len(), 49);
        let verifier: [u8; 32] = raw[17..].try_into().unwrap();
        for (bit, count) in ones.iter_mut().enumerate() {
            *count += usize::from(verifier[bit / 8] >> (bit % 8) & 1);
        }
        assert!(verifiers.insert(verifier), "a verifier repeated");
    }
    // Every one of the 256 bits varies like a fair coin (mean N/2, standard
    // deviation sqrt(N)/2 = 32; 6 sigma = 192): no bit is fixed or biased.
    for (bit, count) in ones.iter().enumerate() {
        assert!(count.abs_diff(N / 2) < 192, "verifier bit {bit} set in {count} of {N} tokens");
    }
}
