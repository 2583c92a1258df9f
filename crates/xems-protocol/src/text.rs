//! The secret text of a request, borrowed from its line.
//!
//! A decoded request points into the line it came from instead of copying
//! its keys, tokens and values out: each copy was an allocation, a copy, a
//! wipe and a free per request. The line itself is wiped by its owner (the
//! connection's [`LineBuffer`](crate::LineBuffer) wipes every line it
//! drops). Text the decoder had to unescape is owned, and wiped on drop.

use std::borrow::Cow;
use std::fmt;

use xems_core::{Value, ValueForm};
use zeroize::{Zeroize, Zeroizing};

/// Bytes borrowed from the line, or owned and wiped on drop.
#[derive(Clone)]
enum Bytes<'a> {
    Borrowed(&'a [u8]),
    Owned(Zeroizing<Vec<u8>>),
}

impl Bytes<'_> {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Owned(v) => v,
        }
    }
}

impl<'a> From<Cow<'a, [u8]>> for Bytes<'a> {
    fn from(c: Cow<'a, [u8]>) -> Self {
        match c {
            Cow::Borrowed(b) => Bytes::Borrowed(b),
            Cow::Owned(v) => Bytes::Owned(Zeroizing::new(v)),
        }
    }
}

/// A key or token of a request. `Debug` shows only its length.
///
/// ```
/// use xems_protocol::{Command, decode_request};
///
/// let req = decode_request(br#"{"action":"get","sandbox":"s","key":"k1"}"#).unwrap();
/// let Command::Get { key, .. } = req.command else { panic!() };
/// assert_eq!(key.expose(), "k1");
/// assert_eq!(format!("{key:?}"), "Secret(2 bytes)");
/// ```
#[derive(Clone)]
pub struct Secret<'a>(Cow<'a, str>);

impl<'a> Secret<'a> {
    /// Text borrowed from a line, or unescaped from it.
    pub(crate) fn new(text: Cow<'a, str>) -> Self {
        Secret(text)
    }

    /// The text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret<'_> {
    fn drop(&mut self) {
        // Unescaped text is this request's own copy; borrowed text is the
        // line's, wiped with it.
        if let Cow::Owned(text) = &mut self.0 {
            text.zeroize();
        }
    }
}

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// The `value` of a request: its bytes, in the form the line gave them
/// ([`ValueForm::Json`] when the line wrote the string exactly as
/// `serde_json` writes it, see `docs/DESIGN.md`, "Values in their wire
/// form"). `Debug` shows only its length.
///
/// ```
/// use xems_core::ValueForm;
/// use xems_protocol::{Command, decode_request};
///
/// let req = decode_request(br#"{"action":"set","sandbox":"s","key":"k","value":"a\"b"}"#).unwrap();
/// let Command::Set { value, .. } = req.command else { panic!() };
/// assert_eq!((value.form(), value.as_bytes()), (ValueForm::Json, &br#"a\"b"#[..]));
/// assert_eq!(value.to_value().into_raw().unwrap().as_bytes(), b"a\"b");
/// ```
#[derive(Clone)]
pub struct ValueText<'a> {
    bytes: Bytes<'a>,
    form: ValueForm,
}

impl<'a> ValueText<'a> {
    /// The escaped text of a JSON string, borrowed from the line.
    pub(crate) fn json(text: &'a [u8]) -> Self {
        ValueText { bytes: Bytes::Borrowed(text), form: ValueForm::Json }
    }

    /// Raw bytes, borrowed from the line or decoded from it.
    pub(crate) fn raw(bytes: Cow<'a, [u8]>) -> Self {
        ValueText { bytes: bytes.into(), form: ValueForm::Raw }
    }

    /// The bytes, in the value's [form](Self::form).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get()
    }

    /// The form the bytes are in.
    pub fn form(&self) -> ValueForm {
        self.form
    }

    /// Number of bytes (in the value's form).
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// An owned copy, wiped on drop.
    pub fn to_value(&self) -> Value {
        Value::in_form(self.as_bytes().to_vec(), self.form)
    }
}

impl fmt::Debug for ValueText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValueText({} bytes, {:?})", self.len(), self.form)
    }
}
