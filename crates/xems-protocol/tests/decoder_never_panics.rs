//! Property tests: no input makes the decoder panic, and every line gets
//! exactly one answer.

use proptest::prelude::*;
use xems_protocol::{Frame, LineBuffer, decode_request, fuzz_entry};

/// JSON-ish bytes: mostly structure characters and field names, so the
/// generator reaches the decoder's deeper paths and not only the JSON syntax
/// errors that random bytes hit first.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let atoms = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        "\\u0000",
        "\\ud800",
        "null",
        "true",
        "false",
        "-1",
        "0",
        "1e999",
        "18446744073709551616",
        "\"action\"",
        "\"set\"",
        "\"get\"",
        "\"ping\"",
        "\"resolve\"",
        "\"migrate\"",
        "\"update_if\"",
        "\"sandbox\"",
        "\"key\"",
        "\"value\"",
        "\"ttl\"",
        "\"15m\"",
        "\"rotate\"",
        "\"grace_period\"",
        "\"encoding\"",
        "\"base64\"",
        "\"id\"",
        "\"version\"",
        "\"by_ms\"",
        "\n",
        "\r",
        " ",
        "\u{0}",
        "\u{ff}",
        "é",
    ]);
    prop::collection::vec(atoms, 0..64).prop_map(|v| v.concat().into_bytes())
}

/// One answer per newline, plus one for an unterminated tail.
fn expected_answers(data: &[u8]) -> usize {
    let newlines = data.iter().filter(|b| **b == b'\n').count();
    newlines + usize::from(!data.is_empty() && !data.ends_with(b"\n"))
}

/// A whole buffer decoded as one line: either a request, or an error whose
/// code is one of the decoder's.
fn check_single_line(data: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = decode_request(data) {
        let code = e.kind.code();
        prop_assert!(
            ["bad_request", "unknown_action", "invalid_duration", "invalid_argument"].contains(&code),
            "unexpected code {}",
            code
        );
        prop_assert!(!e.to_string().is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert_eq!(fuzz_entry(&data), expected_answers(&data));
        check_single_line(&data)?;
    }

    #[test]
    fn jsonish_bytes_never_panic(data in jsonish()) {
        prop_assert_eq!(fuzz_entry(&data), expected_answers(&data));
        check_single_line(&data)?;
    }

    #[test]
    fn one_frame_per_newline(data in prop::collection::vec(any::<u8>(), 0..4096), max in 1usize..512) {
        let mut lines = LineBuffer::new(max);
        let mut frames = 0usize;
        for chunk in data.chunks(37) {
            lines.extend(chunk);
            while let Some(frame) = lines.next_frame() {
                if let Frame::Line(l) = frame {
                    prop_assert!(l.len() <= max);
                }
                frames += 1;
            }
        }
        let tail = lines.finish().is_some();
        let newlines = data.iter().filter(|b| **b == b'\n').count();
        prop_assert_eq!(frames, newlines);
        prop_assert_eq!(tail, !data.ends_with(b"\n") && !data.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// A string value comes back exactly as sent, whatever it holds (quotes,
    /// backslashes, control characters, any Unicode, escaped `\u` forms
    /// included), and wherever `value` sits among the other fields.
    #[test]
    fn string_values_round_trip(value in any::<String>(), escape_all in any::<bool>(), value_first in any::<bool>()) {
        let text = if escape_all {
            // Every character as \uXXXX (surrogate pairs beyond the BMP).
            value.encode_utf16().map(|u| format!("\\u{u:04x}")).collect::<String>()
        } else {
            let quoted = serde_json::to_string(&value).unwrap();
            quoted[1..quoted.len() - 1].to_owned()
        };
        let line = if value_first {
            format!(r#"{{"value":"{text}","action":"set","sandbox":"s","key":"k"}}"#)
        } else {
            format!(r#"{{"action":"set","sandbox":"s","key":"k","value":"{text}"}}"#)
        };
        let req = decode_request(line.as_bytes()).unwrap();
        let xems_protocol::Command::Set { value: got, .. } = req.command else { panic!("not a set") };
        if !escape_all {
            // Written as serde_json writes it: kept in that form, as is.
            prop_assert_eq!(got.form(), xems_core::ValueForm::Json);
            prop_assert_eq!(got.as_bytes(), text.as_bytes());
        }
        let raw = got.to_value().into_raw().unwrap();
        prop_assert_eq!(raw.as_bytes(), value.as_bytes());
    }

    /// Any string body a client may send (every escape form, `\u` escapes
    /// of any code unit, valid surrogate pairs and lone surrogates, at any
    /// alignment) decodes to what `serde_json` makes of it, or is refused
    /// where `serde_json` refuses it.
    #[test]
    fn string_escapes_decode_as_serde_json_does(
        parts in proptest::collection::vec(prop_oneof![
            "[a-z\"{}:,é😀 ]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap().trim_matches('"').to_owned()),
            prop_oneof![Just("\\\""), Just("\\\\"), Just("\\/"), Just("\\b"), Just("\\f"),
                        Just("\\n"), Just("\\r"), Just("\\t")].prop_map(str::to_owned),
            any::<u16>().prop_map(|u| format!("\\u{u:04x}")),
            (0xD800u16..0xDC00, 0xDC00u16..0xE000).prop_map(|(h, l)| format!("\\u{h:04X}\\u{l:04x}")),
        ], 0..24),
    ) {
        let body: String = parts.concat();
        let line = format!(r#"{{"action":"set","sandbox":"s","key":"k","value":"{body}"}}"#);
        let expected = serde_json::from_str::<String>(&format!("\"{body}\""));
        match (decode_request(line.as_bytes()), expected) {
            (Ok(req), Ok(text)) => {
                let xems_protocol::Command::Set { value, .. } = req.command else { panic!("not a set") };
                // The JSON form is kept only for text serde_json would write.
                let canonical = serde_json::to_string(&text).unwrap();
                prop_assert_eq!(value.form() == xems_core::ValueForm::Json, canonical[1..canonical.len() - 1] == body);
                let raw = value.to_value().into_raw().unwrap();
                prop_assert_eq!(raw.as_bytes(), text.as_bytes());
            }
            (Err(_), Err(_)) => {}
            (got, want) => prop_assert!(false, "xems: {:?}, serde_json: {:?}", got.map(|_| ()), want),
        }
    }
}
