//! The [JSON form](crate::ValueForm::Json) of a value, read back into
//! bytes. Used off the hot path: by readers that want raw bytes from a record
//! kept in the JSON form, by the journal and snapshots (which always hold raw
//! bytes), and by backends that keep only raw bytes.

use std::ops::Deref;

use zeroize::Zeroizing;

use crate::ValueForm;

/// Walks the inside of a JSON string, handing each decoded piece to `out`;
/// `None` at anything a JSON string cannot hold (a raw `"` or control
/// byte, an unknown escape, a lone surrogate, a cut-off escape).
fn decode(text: &[u8], mut out: impl FnMut(&[u8])) -> Option<()> {
    let mut i = 0;
    while i < text.len() {
        let run = text[i..].iter().position(|&b| b == b'\\' || b == b'"' || b < 0x20).unwrap_or(text.len() - i);
        out(&text[i..i + run]);
        i += run;
        if i == text.len() {
            break;
        }
        if text[i] != b'\\' {
            return None;
        }
        let letter = *text.get(i + 1)?;
        i += 2;
        let byte = match letter {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0C,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let unit = hex4(text, i)?;
                i += 4;
                let c = match unit {
                    0xD800..=0xDBFF => {
                        if text.get(i..i + 2)? != b"\\u" {
                            return None;
                        }
                        let low = hex4(text, i + 2)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        i += 6;
                        char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
                    }
                    _ => char::from_u32(unit)?,
                };
                out(c.encode_utf8(&mut [0u8; 4]).as_bytes());
                continue;
            }
            _ => return None,
        };
        out(&[byte]);
    }
    Some(())
}

fn hex4(text: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(text.get(at..at + 4)?).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// The bytes the inside of a JSON string stands for; `None` if `text` is
/// not one.
///
/// ```
/// assert_eq!(&*xems_core::json_text::unescape(br#"a\"b\u00e9\n"#).unwrap(), "a\"bé\n".as_bytes());
/// assert!(xems_core::json_text::unescape(br#"a"b"#).is_none());
/// ```
pub fn unescape(text: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len()));
    decode(text, |piece| out.extend_from_slice(piece))?;
    Some(out)
}

/// How many bytes the inside of a JSON string stands for, without writing
/// them; `None` if `text` is not one.
pub fn raw_len(text: &[u8]) -> Option<usize> {
    let mut n = 0;
    decode(text, |piece| n += piece.len())?;
    Some(n)
}

/// A value's raw bytes: borrowed when it was raw, unescaped (and wiped on
/// drop) when it was in its JSON form.
#[derive(Debug)]
pub enum RawBytes<'a> {
    /// The bytes as given.
    Borrowed(&'a [u8]),
    /// The bytes the JSON form stood for.
    Unescaped(Zeroizing<Vec<u8>>),
}

impl Deref for RawBytes<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            RawBytes::Borrowed(b) => b,
            RawBytes::Unescaped(v) => v,
        }
    }
}

/// The raw bytes of `value`, given in `form`: what a backend that keeps only
/// raw bytes stores.
///
/// # Errors
///
/// `value` is in the JSON form but is not the inside of a JSON string.
pub fn raw_bytes(value: &[u8], form: ValueForm) -> crate::Result<RawBytes<'_>> {
    match form {
        ValueForm::Raw => Ok(RawBytes::Borrowed(value)),
        ValueForm::Json => unescape(value).map(RawBytes::Unescaped).ok_or_else(|| {
            crate::Error::InvalidArgument("a value given in its JSON form is not the inside of a JSON string".into())
        }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The inside of `s` as `serde_json` writes it.
    fn escaped(s: &str) -> Vec<u8> {
        let quoted = serde_json::to_vec(s).unwrap();
        quoted[1..quoted.len() - 1].to_vec()
    }

    proptest! {
        #[test]
        fn reads_back_what_serde_json_writes(s in any::<String>()) {
            let text = escaped(&s);
            prop_assert_eq!(&*unescape(&text).unwrap(), s.as_bytes());
            prop_assert_eq!(raw_len(&text), Some(s.len()));
        }

        #[test]
        fn agrees_with_serde_json_on_any_text(t in "[a-z\"\\\\/ubfnrtDdC0-9\u{e9}]{0,24}") {
            let quoted = format!("\"{t}\"");
            let theirs: Option<String> = serde_json::from_str(&quoted).ok();
            prop_assert_eq!(unescape(t.as_bytes()).map(|v| v.to_vec()), theirs.map(String::into_bytes));
        }
    }

    #[test]
    fn escapes_serde_json_does_not_write_are_read_too() {
        assert_eq!(&*unescape(br"\/\u0041\ud83d\ude00").unwrap(), "/A😀".as_bytes());
        for bad in [&br"\ud83d"[..], br"\ud83dx", br"\u12", br"\x", b"\\", b"a\nb", br"\udc00\ud83d"] {
            assert!(unescape(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn raw_bytes_borrows_raw_values_and_refuses_bad_text() {
        assert!(matches!(raw_bytes(b"a\"b", ValueForm::Raw).unwrap(), RawBytes::Borrowed(b"a\"b")));
        assert_eq!(&*raw_bytes(br#"a\"b"#, ValueForm::Json).unwrap(), b"a\"b");
        assert!(raw_bytes(b"a\"b", ValueForm::Json).is_err());
    }
}
