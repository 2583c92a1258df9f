//! The decoder's fast path: a scanner for the request line as clients
//! write it (one flat object of known fields with string, boolean, integer
//! or `null` values), straight into [`Raw`].
//!
//! It accepts a subset of what `serde_json` accepts and reads that subset
//! exactly as `serde_json` does; anything else (unknown or repeated fields,
//! `\u` escapes, floats, negative numbers, object values, any syntax
//! error) makes it give up, and the line goes to `serde_json`, which reads
//! it or writes the error message. So the fast path changes no answer, only
//! the cost: a property test holds the two to the same result on lines
//! built to sit on the boundary. Field names are matched as bytes, values
//! are borrowed from the line unless they have escapes, and nothing is
//! moved after it is read (the derived deserializer moved the whole `Raw`
//! several times).

use std::borrow::Cow;

use super::{Id, Millis, Raw, RawField, RawRotate};
use crate::json::{Text, read_str, read_text};

/// Reads `line` as a request object into `raw` (which starts empty), or
/// returns `false` to leave the line to `serde_json` (`raw` may then hold
/// part of it).
pub(super) fn scan<'a>(line: &'a str, raw: &mut Raw<'a>) -> bool {
    scan_object(line, raw).is_some()
}

fn scan_object<'a>(line: &'a str, raw: &mut Raw<'a>) -> Option<()> {
    let mut s = Scanner { line, at: 0 };
    // One bit per field: a repeated field is an error for serde.
    let mut seen = 0u32;
    s.skip_ws();
    s.expect(b'{')?;
    s.skip_ws();
    if s.peek()? == b'}' {
        s.at += 1;
    } else {
        loop {
            let name = s.name()?;
            s.skip_ws();
            s.expect(b':')?;
            s.skip_ws();
            let field = Field::named(name)?;
            let bit = 1 << field as u32;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            if !s.null() {
                s.field(field, raw)?;
            }
            s.skip_ws();
            match s.next()? {
                b',' => s.skip_ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.skip_ws();
    (s.at == line.len()).then_some(())
}

/// The fields of [`Raw`] (at most 32: the scanner keeps one bit each).
#[derive(Clone, Copy)]
enum Field {
    Id,
    Action,
    Sandbox,
    Key,
    Value,
    Encoding,
    Ttl,
    AbsoluteTtl,
    Rotate,
    GracePeriod,
    Refresh,
    To,
    Subject,
    Except,
    Version,
    SessionId,
    Token,
    Verbose,
    ByMs,
}

impl Field {
    /// The field of a name, as serde's derived code names them.
    fn named(name: &[u8]) -> Option<Field> {
        Some(match name {
            b"id" => Field::Id,
            b"action" => Field::Action,
            b"sandbox" => Field::Sandbox,
            b"key" => Field::Key,
            b"value" => Field::Value,
            b"encoding" => Field::Encoding,
            b"ttl" => Field::Ttl,
            b"absolute_ttl" => Field::AbsoluteTtl,
            b"rotate" => Field::Rotate,
            b"grace_period" => Field::GracePeriod,
            b"refresh" => Field::Refresh,
            b"to" => Field::To,
            b"subject" => Field::Subject,
            b"except" => Field::Except,
            b"version" => Field::Version,
            b"session_id" => Field::SessionId,
            b"token" => Field::Token,
            b"verbose" => Field::Verbose,
            b"by_ms" => Field::ByMs,
            _ => return None,
        })
    }
}

struct Scanner<'a> {
    line: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.line.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// JSON's four whitespace bytes, as serde_json skips them.
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Consumes `word` if it comes next.
    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.bytes()[self.at..].starts_with(word);
        if found {
            self.at += word.len();
        }
        found
    }

    fn null(&mut self) -> bool {
        self.literal(b"null")
    }

    /// A field name without escapes.
    fn name(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        match read_str(self.bytes(), self.at - 1)? {
            (Cow::Borrowed(name), after) => {
                self.at = after;
                Some(name)
            }
            (Cow::Owned(_), _) => None,
        }
    }

    /// A string's content, as bytes.
    fn string_bytes(&mut self) -> Option<Cow<'a, [u8]>> {
        if self.peek()? != b'"' {
            return None;
        }
        let (content, after) = read_str(self.bytes(), self.at)?;
        self.at = after;
        Some(content)
    }

    /// A `value` string: its escaped text when the line wrote it as
    /// `serde_json` would (kept in that form: see `RawField::Json`),
    /// otherwise its content.
    fn value(&mut self) -> Option<RawField<'a>> {
        if self.peek()? != b'"' {
            return None;
        }
        let (text, after) = read_text(self.bytes(), self.at)?;
        self.at = after;
        Some(match text {
            Text::Json(text) => RawField::Json(text),
            Text::Raw(content) => RawField::Text(content),
        })
    }

    /// A string's content. Borrowed text is a slice of the line between
    /// ASCII quotes, so it is valid UTF-8; unescaped text is checked.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.at + 1;
        match self.string_bytes()? {
            Cow::Borrowed(b) => self.line.get(start..start + b.len()).map(Cow::Borrowed),
            Cow::Owned(b) => String::from_utf8(b).ok().map(Cow::Owned),
        }
    }

    fn boolean(&mut self) -> Option<bool> {
        if self.literal(b"true") {
            Some(true)
        } else if self.literal(b"false") {
            Some(false)
        } else {
            None
        }
    }

    /// A non-negative integer that fits a `u64`, written as JSON allows
    /// (no leading zero). A fraction or an exponent after it is refused by
    /// the caller, which wants a delimiter after every value.
    fn integer(&mut self) -> Option<u64> {
        let digits = self.bytes()[self.at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let text = &self.bytes()[self.at..self.at + digits];
        if digits == 0 || (digits > 1 && text[0] == b'0') {
            return None;
        }
        let n = text.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
        self.at += digits;
        Some(n)
    }

    /// Reads the value of `field` into `raw`.
    fn field(&mut self, field: Field, raw: &mut Raw<'a>) -> Option<()> {
        match field {
            Field::Id => {
                raw.id = Some(match self.peek()? {
                    b'"' => Id::Str(self.string()?.into_owned()),
                    _ => Id::Unsigned(self.integer()?),
                });
            }
            Field::Action => raw.action = Some(self.string()?),
            Field::Sandbox => raw.sandbox = Some(self.string()?),
            Field::Key => raw.key = Some(self.string()?),
            Field::Value => raw.value = Some(self.value()?),
            Field::Encoding => raw.encoding = Some(self.string()?),
            Field::Ttl => raw.ttl = Some(self.string()?),
            Field::AbsoluteTtl => raw.absolute_ttl = Some(self.string()?),
            Field::Rotate => {
                raw.rotate = Some(match self.peek()? {
                    b'"' => RawRotate::Text(self.string()?),
                    _ => RawRotate::Bool(self.boolean()?),
                });
            }
            Field::GracePeriod => raw.grace_period = Some(Millis(self.integer()?)),
            Field::Refresh => raw.refresh = Some(self.boolean()?),
            Field::To => raw.to = Some(self.string()?),
            Field::Subject => raw.subject = Some(self.string()?),
            Field::Except => raw.except = Some(self.string()?),
            Field::Version => raw.version = Some(self.integer()?),
            Field::SessionId => raw.session_id = Some(self.string()?),
            Field::Token => raw.token = Some(self.string()?),
            Field::Verbose => raw.verbose = Some(self.boolean()?),
            Field::ByMs => raw.by_ms = Some(self.integer()?),
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    use super::*;

    /// Every field name of `Raw`.
    const FIELDS: [&str; 19] = [
        "id",
        "action",
        "sandbox",
        "key",
        "value",
        "encoding",
        "ttl",
        "absolute_ttl",
        "rotate",
        "grace_period",
        "refresh",
        "to",
        "subject",
        "except",
        "version",
        "session_id",
        "token",
        "verbose",
        "by_ms",
    ];

    #[test]
    fn every_name_has_its_own_field() {
        let bits: Vec<u32> = FIELDS.iter().map(|n| 1 << Field::named(n.as_bytes()).unwrap() as u32).collect();
        assert_eq!(bits.iter().fold(0, |a, b| a | b).count_ones(), 19);
    }

    fn serde(line: &str) -> Option<Raw<'_>> {
        serde_json::from_str(line).ok()
    }

    fn fast(line: &str) -> Option<Raw<'_>> {
        let mut raw = Raw::default();
        scan(line, &mut raw).then_some(raw)
    }

    #[test]
    fn the_lines_clients_send_take_the_fast_path() {
        for line in [
            r#"{"action":"ping"}"#,
            r#"{"action":"set","sandbox":"otp-pending","key":"9f0c","value":"{\"email\":\"u@e.x\",\"mfa_verified\":false}","ttl":"15m"}"#,
            r#"{"action":"get","sandbox":"auth-session","key":"9f0c","rotate":true,"ttl":"15m","grace_period":1000}"#,
            r#"{"action":"del","sandbox":"s","key":"k"}"#,
            r#" { "id" : 7 , "action" : "resolve" , "sandbox" : "s" , "key" : "t" , "rotate" : "5m" , "refresh" : false } "#,
            r#"{"id":"a\"1","action":"update_if","sandbox":"s","key":"k","version":18446744073709551615,"value":"v","verbose":null}"#,
        ] {
            let fast = fast(line).unwrap_or_else(|| panic!("fast path refused {line}"));
            assert_eq!(Some(fast), serde(line), "{line}");
        }
    }

    #[test]
    fn what_it_leaves_to_serde() {
        for line in [
            r#"{"action":"ping","action":"ping"}"#,
            r#"{"action":null,"action":"ping"}"#,
            r#"{"action":"ping","other":1}"#,
            r#"{"action":"p\u0069ng"}"#,
            r#"{"act\"ion":"ping"}"#,
            r#"{"action":"ping",}"#,
            r#"{"action":"ping"} x"#,
            r#"{"action":"set","value":{"a":1}}"#,
            r#"{"grace_period":1.5}"#,
            r#"{"grace_period":-1}"#,
            r#"{"grace_period":01}"#,
            r#"{"version":18446744073709551616}"#,
            r#"{"refresh":truex}"#,
            r#"{"id":-3}"#,
            "[1,2]",
            "{",
            "",
        ] {
            assert!(fast(line).is_none(), "{line}");
        }
    }

    /// A value for field `name`: mostly of the field's type, sometimes of
    /// another type or malformed, so lines sit on both sides of the
    /// boundary.
    fn value_for(name: &str) -> BoxedStrategy<String> {
        let text = prop_oneof![
            crate::json::tests::dense_text().prop_map(|t| serde_json::to_string(&t).unwrap()),
            "\"[a-z0-9 \\\\\"/]{0,12}\"",
        ];
        let number = "(0|[1-9][0-9]{0,20}|-[0-9]{1,3}|0[0-9]|[0-9]\\.[0-9]|[0-9]e[0-9])";
        let boolean = prop_oneof![Just("true".to_owned()), Just("false".to_owned()), Just("tru".to_owned())];
        let typed = match name {
            "grace_period" | "version" | "by_ms" => number.boxed(),
            "refresh" | "verbose" => boolean.boxed(),
            "id" => prop_oneof![number, text].boxed(),
            "rotate" => prop_oneof![boolean, text].boxed(),
            "value" => {
                prop_oneof![4 => text, 1 => Just("{\"a\":[1,\"b\"]}".to_owned()), 1 => Just("[]".to_owned())].boxed()
            }
            _ => text.boxed(),
        };
        prop_oneof![8 => typed, 1 => Just("null".to_owned()), 1 => Just("7".to_owned())].boxed()
    }

    /// One `"name": value` member, with whitespace around its parts.
    fn member() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            18 => proptest::sample::select(FIELDS.to_vec()),
            1 => Just("other"),
            1 => Just("act\\u0069on"),
        ];
        let ws = "[ \t\r\n]{0,1}";
        name.prop_flat_map(move |n| (ws, Just(n), ws, value_for(n), ws))
            .prop_map(|(a, n, b, v, c)| format!("{a}\"{n}\"{b}:{c}{v}"))
    }

    /// A line: members joined by commas, sometimes with a stray comma or
    /// trailing bytes.
    fn line() -> impl Strategy<Value = String> {
        let tail = prop_oneof![8 => Just(""), 1 => Just(" \n"), 1 => Just(","), 1 => Just("}")];
        (proptest::collection::vec(member(), 0..5), any::<bool>(), tail).prop_map(|(members, stray, tail)| {
            format!("{{{}{}}}{tail}", members.join(","), if stray { "," } else { "" })
        })
    }

    /// The generator reaches both sides of the boundary often, and on
    /// every line the fast path reads, serde_json reads the same.
    #[test]
    fn the_boundary_is_exercised() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut taken, mut left) = (0, 0);
        for _ in 0..3000 {
            let line = line().new_tree(&mut runner).unwrap().current();
            match fast(&line) {
                Some(fast) => {
                    assert_eq!(Some(fast), serde(&line), "{line}");
                    taken += 1;
                }
                None => left += 1,
            }
        }
        assert!(taken > 300 && left > 300, "taken {taken}, left {left}");
    }

    proptest! {
        /// Whatever the fast path reads, serde_json reads the same way.
        #[test]
        fn the_fast_path_reads_what_serde_reads(line in line()) {
            if let Some(raw) = fast(&line) {
                prop_assert_eq!(Some(raw), serde(&line), "{}", line);
            }
        }

        /// Lines of known fields, each at most once, with values of the
        /// right type: the fast path takes them.
        #[test]
        fn it_takes_well_formed_lines(
            key in "[a-z0-9:._-]{1,20}",
            value in crate::json::tests::dense_text().prop_filter("no \\u escapes", |t| !t.chars().any(|c| c < ' ' && !"\u{8}\t\n\u{c}\r".contains(c))),
            grace in any::<u32>(),
            rotate in any::<bool>(),
        ) {
            let line = serde_json::json!({
                "action": "get", "sandbox": "s", "key": key, "value": value,
                "grace_period": grace, "rotate": rotate, "ttl": "15m"
            }).to_string();
            let raw = fast(&line);
            prop_assert!(raw.is_some(), "{}", line);
            prop_assert_eq!(raw, serde(&line));
        }
    }
}
