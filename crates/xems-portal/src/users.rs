//! The portal's user directory: one seeded demo user, an argon2id password
//! hash, and a TOTP (RFC 6238) authenticator whose codes are each accepted
//! once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

/// The demo account shown on the login page.
pub const DEMO_EMAIL: &str = "demo@xems.dev";
/// The demo account's password (shown on the login page: it is a demo).
pub const DEMO_PASSWORD: &str = "correct-horse-battery";

/// TOTP step, in seconds (RFC 6238's default, what authenticator apps use).
pub const TOTP_STEP: u64 = 30;

/// One user.
pub struct User {
    /// Stable id, used as the session subject.
    pub id: String,
    /// Login email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role shown on the dashboard.
    pub role: String,
    password_hash: String,
    totp: TOTP,
    /// The last TOTP step accepted: a code is never accepted twice (RFC 6238
    /// section 5.2).
    last_step: AtomicU64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Why a TOTP code was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotpRefusal {
    /// Not the code of the current step (or the one just before or after).
    Wrong,
    /// The right code, but already used once.
    Replayed,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl User {
    /// Checks a TOTP code at `time` (Unix seconds), allowing one step of
    /// clock skew either way, and consumes its step.
    pub fn check_totp_at(&self, code: &str, time: u64) -> Result<(), TotpRefusal> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpRefusal::Wrong);
        }
        let now = time / TOTP_STEP;
        // Compare against every candidate (no early exit on a match).
        let mut matched = None;
        for step in now.saturating_sub(1)..=now + 1 {
            let expected = Zeroizing::new(self.totp.generate(step * TOTP_STEP));
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
                matched = Some(step);
            }
        }
        let step = matched.ok_or(TotpRefusal::Wrong)?;
        // Accept each step at most once, even under concurrent attempts.
        let mut last = self.last_step.load(Ordering::Acquire);
        loop {
            if step <= last {
                return Err(TotpRefusal::Replayed);
            }
            match self.last_step.compare_exchange(last, step, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(seen) => last = seen,
            }
        }
    }

    /// Checks a TOTP code now.
    pub fn check_totp(&self, code: &str) -> Result<(), TotpRefusal> {
        self.check_totp_at(code, unix_now())
    }

    /// The current code and how many seconds it stays valid: the demo's
    /// "authenticator app", shown on the MFA page.
    pub fn current_totp(&self) -> (String, u64) {
        let now = unix_now();
        (self.totp.generate(now), TOTP_STEP - now % TOTP_STEP)
    }

    /// The TOTP secret in base32, to add the demo user to a real
    /// authenticator app.
    pub fn totp_secret_base32(&self) -> String {
        self.totp.get_secret_base32()
    }
}

/// Every user of the portal.
#[derive(Debug)]
pub struct Users {
    users: Vec<User>,
    /// Verified against when the email is unknown, so that a wrong email
    /// takes as long as a wrong password.
    dummy_hash: String,
}

fn hash_password(password: &str) -> String {
    let mut raw = [0u8; 16];
    xems_core::random_bytes(&mut raw);
    let salt = SaltString::encode_b64(&raw).expect("16 bytes make a valid salt");
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 with default parameters").to_string()
}

impl Users {
    /// The directory with the demo user, its password hashed with argon2id
    /// (a fresh salt) and a fresh random TOTP secret.
    pub fn with_demo_user() -> Self {
        let mut secret = Zeroizing::new(vec![0u8; 20]);
        xems_core::random_bytes(&mut secret);
        let totp = TOTP::new(Algorithm::SHA1, 6, 1, TOTP_STEP, secret.to_vec()).expect("a 160-bit secret is valid");
        let demo = User {
            id: "u-1".to_owned(),
            email: DEMO_EMAIL.to_owned(),
            name: "Demo User".to_owned(),
            role: "admin".to_owned(),
            password_hash: hash_password(DEMO_PASSWORD),
            totp,
            last_step: AtomicU64::new(0),
        };
        Users { users: vec![demo], dummy_hash: hash_password("not a password anyone has") }
    }

    /// A user by id.
    pub fn get(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    /// The demo user.
    pub fn demo(&self) -> &User {
        &self.users[0]
    }

    /// Checks an email and password. Blocking (argon2 is slow on purpose):
    /// call it from `spawn_blocking`.
    pub fn verify_password(&self, email: &str, password: &str) -> Option<&User> {
        let user = self.users.iter().find(|u| u.email.eq_ignore_ascii_case(email.trim()));
        let hash = user.map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let parsed = PasswordHash::new(hash).ok()?;
        let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        user.filter(|_| ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_test_vectors() {
        xems_testkit::logs::capture();
        // RFC 6238 appendix B, SHA-1, 8 digits, secret "12345678901234567890".
        let totp = TOTP::new_unchecked(Algorithm::SHA1, 8, 1, 30, b"12345678901234567890".to_vec());
        for (time, code) in
            [(59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924"), (2000000000, "69279037")]
        {
            assert_eq!(totp.generate(time), code, "T = {time}");
        }
    }

    #[test]
    fn passwords_and_codes() {
        xems_testkit::logs::capture();
        let users = Users::with_demo_user();
        assert!(users.verify_password(DEMO_EMAIL, DEMO_PASSWORD).is_some());
        assert!(users.verify_password("DEMO@xems.dev ", DEMO_PASSWORD).is_some(), "emails are case-insensitive");
        assert!(users.verify_password(DEMO_EMAIL, "wrong").is_none());
        assert!(users.verify_password("nobody@xems.dev", DEMO_PASSWORD).is_none());

        let demo = users.demo();
        let t = 1_700_000_000;
        let code = demo.totp.generate(t);
        assert_eq!(demo.check_totp_at("000000x", t), Err(TotpRefusal::Wrong));
        let wrong = if code == "123456" { "654321" } else { "123456" };
        assert_eq!(demo.check_totp_at(wrong, t), Err(TotpRefusal::Wrong));
        assert_eq!(demo.check_totp_at(&code, t), Ok(()));
        assert_eq!(demo.check_totp_at(&code, t), Err(TotpRefusal::Replayed), "a code is accepted once");
        // The previous step's code is within the skew but older than the
        // accepted one: refused too.
        let previous = demo.totp.generate(t - 30);
        assert_eq!(demo.check_totp_at(&previous, t), Err(TotpRefusal::Replayed));
        // The next step's code is accepted.
        assert_eq!(demo.check_totp_at(&demo.totp.generate(t + 30), t + 30), Ok(()));
        // Two steps away is outside the skew.
        assert_eq!(demo.check_totp_at(&demo.totp.generate(t + 120), t), Err(TotpRefusal::Wrong));
    }
}
