//! docs/PROTOCOL.md documents every action and every error code the
//! protocol and the store can send.

const SPEC: &str = include_str!("../../../docs/PROTOCOL.md");

#[test]
fn every_action_is_documented() {
    for action in xems_protocol::ACTIONS {
        assert!(
            SPEC.contains(&format!("#### `{action}`")) || SPEC.contains(&format!("| `{action}` |")),
            "docs/PROTOCOL.md has no section for action {action:?}"
        );
    }
}

#[test]
fn every_error_code_is_documented() {
    let codes = [
        // Decoder and connection.
        "bad_request",
        "unknown_action",
        "line_too_long",
        "invalid_duration",
        "unauthorized",
        "too_many_connections",
        // Handler.
        "not_found",
        "conflict",
        "not_utf8",
        // xems_core::Error::code().
        "invalid_sandbox",
        "invalid_key",
        "invalid_argument",
        "value_too_large",
        "sandbox_full",
        "token_retired",
        "integrity",
        "unavailable",
        "internal",
    ];
    for code in codes {
        assert!(SPEC.contains(&format!("| `{code}`")), "docs/PROTOCOL.md does not document error code {code:?}");
    }
    let core = [
        xems_core::Error::InvalidKey("x"),
        xems_core::Error::TokenRetired,
        xems_core::Error::Integrity,
        xems_core::Error::InvalidArgument(String::new()),
        xems_core::Error::ValueTooLarge { size: 1, max: 0 },
        xems_core::Error::SandboxFull { sandbox: String::new(), limit: String::new() },
        xems_core::Error::unavailable("x"),
        xems_core::validate_sandbox("").unwrap_err(),
        xems_core::Error::from(xems_core::parse_duration("0").unwrap_err()),
    ];
    for e in &core {
        assert!(codes.contains(&e.code()), "core code {:?} missing from this list", e.code());
    }
}
