//! `crypto`: the primitive choices of `xems-core`, measured side by side so
//! the choice can be checked on any machine.
//!
//! - HMAC-SHA256 of a 44-byte token (the index digest): RustCrypto
//!   `hmac` + `sha2` (what the core uses), `ring::hmac`, `aws-lc-rs`.
//! - AES-256-GCM seal and open of 256 bytes: `ring` (what the core uses),
//!   RustCrypto `aes-gcm`, `aws-lc-rs`. Every variant copies the 256 bytes
//!   into its work buffer first (a seal seals a fresh copy; an open needs the
//!   ciphertext intact for the next round), so the copy is in every row.
//! - 32 random bytes: `getrandom` straight from the kernel versus the
//!   core's 1 KiB-batched path; and `Token::mint` as a whole.
//!
//! All single-threaded: these are CPU costs, not contention.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::measure::{Measurement, RunConfig, run_threads};
use crate::report::{self, Report};

const MSG_LEN: usize = 256;
const KEY: [u8; 32] = [0x42; 32];
const AAD: &[u8] = b"xems/v1/sandbox:active/record-id-0123456789";

/// Runs the crypto cases and prints their report.
pub fn run(quick: bool, report: &mut Report) {
    let cfg = RunConfig::for_mode(quick, 1).with_sample_every(16);
    let token = xems_core::Token::mint(0);
    let token = token.expose().as_bytes();
    assert_eq!(token.len(), 44);
    let mut rows: Vec<Measurement> = Vec::new();

    // HMAC-SHA256 over a 44-byte token.
    rows.push(run_threads("hmac_rustcrypto", &cfg, |_| {
        let keyed = Hmac::<Sha256>::new_from_slice(&KEY).expect("any key length");
        move || {
            let mut mac = keyed.clone();
            mac.update(std::hint::black_box(token));
            std::hint::black_box(mac.finalize().into_bytes());
        }
    }));
    rows.push(run_threads("hmac_ring", &cfg, |_| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &KEY);
        move || {
            std::hint::black_box(ring::hmac::sign(&key, std::hint::black_box(token)));
        }
    }));
    #[cfg(feature = "aws-lc")]
    rows.push(run_threads("hmac_aws_lc", &cfg, |_| {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &KEY);
        move || {
            std::hint::black_box(aws_lc_rs::hmac::sign(&key, std::hint::black_box(token)));
        }
    }));
    rows.push(run_threads("hmac_xems_core_index_digest", &cfg, |_| {
        let key = xems_core::IndexKey::new(&KEY);
        move || {
            std::hint::black_box(key.digest(std::hint::black_box(token)));
        }
    }));

    // AES-256-GCM, 256 bytes.
    let plaintext = session_like_bytes();
    rows.push(run_threads("aes_seal_ring", &cfg, |_| {
        let key = ring_key();
        let mut buf = [0u8; MSG_LEN];
        let mut n = 0u64;
        move || {
            n += 1;
            buf.copy_from_slice(&plaintext);
            let tag = key
                .seal_in_place_separate_tag(
                    ring::aead::Nonce::assume_unique_for_key(nonce(n)),
                    ring::aead::Aad::from(AAD),
                    &mut buf,
                )
                .expect("seal");
            std::hint::black_box(&buf);
            std::hint::black_box(tag.as_ref());
        }
    }));
    rows.push(run_threads("aes_open_ring", &cfg, |_| {
        let key = ring_key();
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce(1)),
            ring::aead::Aad::from(AAD),
            &mut sealed,
        )
        .expect("seal");
        let mut buf = sealed.clone();
        move || {
            buf.copy_from_slice(&sealed);
            let pt = key
                .open_in_place(ring::aead::Nonce::assume_unique_for_key(nonce(1)), ring::aead::Aad::from(AAD), &mut buf)
                .expect("open");
            std::hint::black_box(pt);
        }
    }));
    rows.push(run_threads("aes_seal_rustcrypto", &cfg, |_| {
        use aes_gcm::aead::{AeadInPlace, KeyInit};
        let key = aes_gcm::Aes256Gcm::new(&KEY.into());
        let mut buf = [0u8; MSG_LEN];
        let mut n = 0u64;
        move || {
            n += 1;
            buf.copy_from_slice(&plaintext);
            let tag = key.encrypt_in_place_detached(&nonce(n).into(), AAD, &mut buf).expect("seal");
            std::hint::black_box(&buf);
            std::hint::black_box(tag.as_slice());
        }
    }));
    rows.push(run_threads("aes_open_rustcrypto", &cfg, |_| {
        use aes_gcm::aead::{AeadInPlace, KeyInit};
        let key = aes_gcm::Aes256Gcm::new(&KEY.into());
        let mut sealed = plaintext;
        let tag = key.encrypt_in_place_detached(&nonce(1).into(), AAD, &mut sealed).expect("seal");
        let mut buf = sealed;
        move || {
            buf.copy_from_slice(&sealed);
            key.decrypt_in_place_detached(&nonce(1).into(), AAD, &mut buf, &tag).expect("open");
            std::hint::black_box(&buf);
        }
    }));
    #[cfg(feature = "aws-lc")]
    {
        use aws_lc_rs::aead as lc;
        let lc_key = || lc::LessSafeKey::new(lc::UnboundKey::new(&lc::AES_256_GCM, &KEY).expect("AES-256 key"));
        rows.push(run_threads("aes_seal_aws_lc", &cfg, |_| {
            let key = lc_key();
            let mut buf = [0u8; MSG_LEN];
            let mut n = 0u64;
            move || {
                n += 1;
                buf.copy_from_slice(&plaintext);
                let tag = key
                    .seal_in_place_separate_tag(
                        lc::Nonce::assume_unique_for_key(nonce(n)),
                        lc::Aad::from(AAD),
                        &mut buf,
                    )
                    .expect("seal");
                std::hint::black_box(&buf);
                std::hint::black_box(tag.as_ref());
            }
        }));
        rows.push(run_threads("aes_open_aws_lc", &cfg, |_| {
            let key = lc_key();
            let mut sealed = plaintext.to_vec();
            key.seal_in_place_append_tag(lc::Nonce::assume_unique_for_key(nonce(1)), lc::Aad::from(AAD), &mut sealed)
                .expect("seal");
            let mut buf = sealed.clone();
            move || {
                buf.copy_from_slice(&sealed);
                let pt = key
                    .open_in_place(lc::Nonce::assume_unique_for_key(nonce(1)), lc::Aad::from(AAD), &mut buf)
                    .expect("open");
                std::hint::black_box(pt);
            }
        }));
    }
    rows.push(run_threads("aes_seal_xems_core", &cfg, |_| {
        // The core's allocating seal: a new Vec of ciphertext + tag per call.
        let key = xems_core::SealKey::new(&KEY);
        let mut n = 0u64;
        move || {
            n += 1;
            std::hint::black_box(key.seal(nonce(n), AAD, b"", &plaintext));
        }
    }));

    // 32 random bytes.
    rows.push(run_threads("random32_getrandom", &cfg, |_| {
        let mut buf = [0u8; 32];
        move || {
            getrandom::fill(&mut buf).expect("OS random generator");
            std::hint::black_box(&buf);
        }
    }));
    rows.push(run_threads("random32_xems_batched", &cfg, |_| {
        let mut buf = [0u8; 32];
        move || {
            xems_core::random_bytes(&mut buf);
            std::hint::black_box(&buf);
        }
    }));
    rows.push(run_threads("token_mint", &cfg, |_| {
        let mut route = 0u8;
        move || {
            route = route.wrapping_add(1);
            std::hint::black_box(xems_core::Token::mint(route));
        }
    }));

    report::print_table("crypto primitives (1 thread; ratios from cpu ns/op)", &rows);

    // CPU time per operation: on one thread it is the operation's cost, and
    // unlike wall time it does not count time stolen by other work.
    let ns = |name: &str| rows.iter().find(|m| m.name == name).map(|m| m.cpu_ns_per_op).filter(|&n| n > 0.0);
    // Ratios are speed ratios: x_vs_y = ns(y) / ns(x), above 1 means x is faster.
    let speed = |x: &str, y: &str| report::ratio(ns(y), ns(x));
    let mut ratios = Map::new();
    let mut put = |k: &str, v: Option<f64>| {
        ratios.insert(k.to_owned(), v.map_or(Value::Null, Value::from));
    };
    put("hmac_rustcrypto_vs_ring", speed("hmac_rustcrypto", "hmac_ring"));
    put("hmac_aws_lc_vs_ring", speed("hmac_aws_lc", "hmac_ring"));
    put("aes_seal_rustcrypto_vs_ring", speed("aes_seal_rustcrypto", "aes_seal_ring"));
    put("aes_open_rustcrypto_vs_ring", speed("aes_open_rustcrypto", "aes_open_ring"));
    put("aes_seal_aws_lc_vs_ring", speed("aes_seal_aws_lc", "aes_seal_ring"));
    put("aes_open_aws_lc_vs_ring", speed("aes_open_aws_lc", "aes_open_ring"));
    put("random_batched_vs_getrandom", speed("random32_xems_batched", "random32_getrandom"));
    report::print_ratios(&ratios);

    let ns_map: Map<String, Value> =
        rows.iter().map(|m| (m.name.clone(), Value::from(report::round3(m.ns_per_op)))).collect();
    let cpu_map: Map<String, Value> =
        rows.iter().map(|m| (m.name.clone(), Value::from(report::round3(m.cpu_ns_per_op)))).collect();
    report.set("aws_lc", cfg!(feature = "aws-lc"));
    report.set("ns_per_op", ns_map);
    report.set("cpu_ns_per_op", cpu_map);
    report.set("ratio_basis", "cpu_ns_per_op");
    report.set_ratios(&ratios);
    report.set("cases", &rows);
}

fn ring_key() -> ring::aead::LessSafeKey {
    ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &KEY).expect("AES-256 key"))
}

/// A unique 96-bit nonce from a counter.
fn nonce(n: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[4..].copy_from_slice(&n.to_be_bytes());
    out
}

/// The 256-byte session value every store and primitive works on.
fn session_like_bytes() -> [u8; MSG_LEN] {
    let v = crate::engine::session_value();
    let mut out = [0u8; MSG_LEN];
    out.copy_from_slice(&v);
    out
}
