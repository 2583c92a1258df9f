//! The [JSON form](crate::ValueForm::Json) of a value, read back into
//! bytes by `serde_json`. Used off the hot path: by readers that want raw
//! bytes from a record kept in the JSON form, by the journal and snapshots
//! (which always hold raw bytes), and by backends that keep only raw bytes.

use std::ops::Deref;

use zeroize::Zeroizing;

use crate::ValueForm;

/// The bytes the inside of a JSON string stands for; `None` if `text` is
/// not one.
///
/// ```
/// assert_eq!(&*xems_core::json_text::unescape(br#"a\"b\u00e9\n"#).unwrap(), "a\"bé\n".as_bytes());
/// assert!(xems_core::json_text::unescape(br#"a"b"#).is_none());
/// ```
pub fn unescape(text: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    // `serde_json` reads it, quoted: a raw `"` inside ends the string early
    // and is refused as trailing characters.
    let mut quoted = Zeroizing::new(Vec::with_capacity(text.len() + 2));
    quoted.push(b'"');
    quoted.extend_from_slice(text);
    quoted.push(b'"');
    let content: String = serde_json::from_slice(&quoted).ok()?;
    Some(Zeroizing::new(content.into_bytes()))
}

/// How many bytes the inside of a JSON string stands for; `None` if `text`
/// is not one.
pub fn raw_len(text: &[u8]) -> Option<usize> {
    unescape(text).map(|raw| raw.len())
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
