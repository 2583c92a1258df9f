//! Plaintext values as they come out of a store, and the two forms a
//! value can be kept in.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::json_text;

/// How a value's bytes are written.
///
/// Values are bytes ([`Raw`](Self::Raw)). A store may also keep a value in
/// its [`Json`](Self::Json) form: the protocol server does, for values that
/// arrive as JSON strings, so that a `get` copies the stored text into its
/// answer instead of escaping it again (see `docs/DESIGN.md`, "Values in
/// their wire form"). Which form a record is in is a property of the record;
/// readers that do not ask for the JSON form always get raw bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ValueForm {
    /// The bytes themselves.
    #[default]
    Raw,
    /// UTF-8 text written as the inside of a JSON string literal (no
    /// quotes), escaped exactly as `serde_json` escapes: `\"`, `\\`, `\b`,
    /// `\f`, `\n`, `\r`, `\t`, `\u00xx` (lowercase hex) for the other control
    /// characters, every other character as itself. Stores trust text given
    /// in this form to be so (the protocol's decoder checks it); reading it
    /// back raw fails cleanly, never panics, if it is not.
    Json,
}

/// A plaintext value read from a store, zeroized when dropped.
///
/// `Debug` shows only the length.
///
/// ```
/// use xems_core::Value;
///
/// let v = Value::from(br#"{"user":42}"#.to_vec());
/// assert_eq!(v.as_str().unwrap(), r#"{"user":42}"#);
/// assert_eq!(format!("{v:?}"), "Value(11 bytes)");
/// let parsed: serde_json::Value = v.json().unwrap();
/// assert_eq!(parsed["user"], 42);
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Value(Vec<u8>, ValueForm);

impl Drop for Value {
    fn drop(&mut self) {
        // Only an allocation is wiped: zeroizing a `Vec` that never
        // allocated still calls a zero-length `memset` on its dangling
        // pointer, which glibc does with a masked AVX-512 store that costs
        // ~90 ns on AMD Zen (measured: 5-8% of the server's CPU per `get`,
        // where an emptied value is dropped per request).
        if self.0.capacity() > 0 {
            self.0.zeroize();
        }
    }
}

impl Value {
    /// A value in its [JSON form](ValueForm::Json): `text` is the inside of
    /// a JSON string, escaped as `serde_json` escapes.
    ///
    /// ```
    /// use xems_core::{Value, ValueForm};
    ///
    /// let v = Value::json_text(br#"{\"a\":1}"#.to_vec());
    /// assert_eq!(v.form(), ValueForm::Json);
    /// assert_eq!(v.into_raw().unwrap().as_bytes(), br#"{"a":1}"#);
    /// ```
    pub fn json_text(text: Vec<u8>) -> Self {
        Value(text, ValueForm::Json)
    }

    /// A value of `bytes` in `form`.
    ///
    /// ```
    /// use xems_core::{Value, ValueForm};
    ///
    /// assert_eq!(Value::in_form(b"v".to_vec(), ValueForm::Raw), Value::from(b"v".to_vec()));
    /// assert!(Value::in_form(Vec::new(), ValueForm::Json).is_empty());
    /// ```
    pub fn in_form(bytes: Vec<u8>, form: ValueForm) -> Self {
        Value(bytes, form)
    }

    /// The form the bytes are in (raw unless a reader asked for the JSON
    /// form and the store kept the value so).
    pub fn form(&self) -> ValueForm {
        self.1
    }

    /// The same value as raw bytes (unescaped if it was in its JSON form).
    ///
    /// # Errors
    ///
    /// The value claims the JSON form but is not the inside of a JSON
    /// string ([`Error::Integrity`](crate::Error::Integrity)).
    pub fn into_raw(self) -> crate::Result<Value> {
        match self.1 {
            ValueForm::Raw => Ok(self),
            ValueForm::Json => json_text::unescape(&self.0).map(Value::from).ok_or(crate::Error::Integrity),
        }
    }

    /// The bytes, in the value's [form](Self::form).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as UTF-8 text.
    ///
    /// # Errors
    ///
    /// The value is not UTF-8.
    pub fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.0)
    }

    /// The bytes, still zeroized on drop.
    pub fn into_bytes(self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.into_vec())
    }

    /// The bytes as a `String`, moved (not copied), when they are UTF-8;
    /// otherwise the value back. The `String` is no longer wiped on drop:
    /// the caller takes that over.
    ///
    /// ```
    /// use xems_core::Value;
    ///
    /// assert_eq!(Value::from(b"hi".to_vec()).into_string().unwrap(), "hi");
    /// assert!(Value::from(vec![0xff]).into_string().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// The bytes are not UTF-8 (the value is returned, still wiped on drop).
    pub fn into_string(self) -> Result<String, Value> {
        let form = self.1;
        String::from_utf8(self.into_vec()).map_err(|e| Value(e.into_bytes(), form))
    }

    /// The bytes, moved (not copied) into a plain `Vec`: no longer wiped on
    /// drop, the caller takes that over.
    ///
    /// ```
    /// use xems_core::Value;
    ///
    /// assert_eq!(Value::from(b"hi".to_vec()).into_vec(), b"hi");
    /// ```
    pub fn into_vec(mut self) -> Vec<u8> {
        // What is left is an empty `Vec` that never allocated: its drop
        // wipes nothing (see `Drop`).
        std::mem::take(&mut self.0)
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Deserializes the value as JSON.
    ///
    /// # Errors
    ///
    /// The value is not JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self.1 {
            ValueForm::Raw => serde_json::from_slice(&self.0),
            ValueForm::Json => {
                let raw = json_text::unescape(&self.0)
                    .ok_or_else(|| serde::de::Error::custom("the value is not the inside of a JSON string"))?;
                serde_json::from_slice(&raw)
            }
        }
    }

    /// Serializes `v` as JSON into a value.
    ///
    /// # Errors
    ///
    /// `T`'s `Serialize` implementation fails.
    pub fn from_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_vec(v).map(Value::from)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value(v, ValueForm::Raw)
    }
}

impl From<Zeroizing<Vec<u8>>> for Value {
    fn from(mut v: Zeroizing<Vec<u8>>) -> Self {
        let bytes = std::mem::take(&mut *v);
        // The shell is empty and never allocated: nothing to wipe, and its
        // drop would still call the costly zero-length `memset` (`Drop`).
        std::mem::forget(v);
        Value(bytes, ValueForm::Raw)
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            ValueForm::Raw => write!(f, "Value({} bytes)", self.0.len()),
            ValueForm::Json => write!(f, "Value({} bytes, JSON form)", self.0.len()),
        }
    }
}
