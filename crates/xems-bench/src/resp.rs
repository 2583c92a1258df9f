//! A minimal blocking RESP2 client for setting up benchmarks (preloading
//! keys, loading scripts, checking cluster state), and the encoder the load
//! generator's request closures use. Not a general Redis client.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// Appends one command in RESP2 (an array of bulk strings) to `out`.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.push(b'*');
    push_decimal(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        push_decimal(out, a.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the decimal digits of `n`.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let len = write_decimal(&mut digits, n).expect("a u64 has at most 20 digits");
    out.extend_from_slice(&digits[..len]);
}

/// Writes the decimal digits of `n` at the start of `out`; their count, or
/// `None` if `out` is too short.
pub fn write_decimal(out: &mut [u8], mut n: u64) -> Option<usize> {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out.get_mut(..len)?.copy_from_slice(&digits[i..]);
    Some(len)
}

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$n` followed by bytes, or `$-1` (nil).
    Bulk(Option<Vec<u8>>),
    /// `*n` followed by replies, or `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (simple or bulk string), for status checks.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// A blocking connection.
#[derive(Debug)]
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    /// Connects with a timeout on connecting and on every read.
    ///
    /// # Errors
    ///
    /// Connection refused or timed out.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Conn { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    /// Sends one command and reads its reply.
    ///
    /// # Errors
    ///
    /// I/O failure or a malformed reply (an error *reply* is `Ok(Reply::Error)`).
    pub fn cmd(&mut self, args: &[&[u8]]) -> anyhow::Result<Reply> {
        let mut buf = Vec::new();
        encode(args, &mut buf);
        self.writer.write_all(&buf)?;
        self.read_reply()
    }

    /// Sends a command and fails on an error reply.
    ///
    /// # Errors
    ///
    /// As [`cmd`](Self::cmd), plus an error reply.
    pub fn cmd_ok(&mut self, args: &[&[u8]]) -> anyhow::Result<Reply> {
        match self.cmd(args)? {
            Reply::Error(e) => bail!("redis answered {e:?} to {}", String::from_utf8_lossy(args[0])),
            r => Ok(r),
        }
    }

    /// Sends pre-encoded commands in one write and reads `n` replies, failing
    /// on the first error reply.
    ///
    /// # Errors
    ///
    /// I/O failure, malformed or error reply.
    pub fn pipeline(&mut self, encoded: &[u8], n: usize) -> anyhow::Result<Vec<Reply>> {
        self.writer.write_all(encoded)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            match self.read_reply()? {
                Reply::Error(e) => bail!("redis answered {e:?} in a pipeline"),
                r => out.push(r),
            }
        }
        Ok(out)
    }

    /// Reads one reply.
    ///
    /// # Errors
    ///
    /// I/O failure or a malformed reply.
    pub fn read_reply(&mut self) -> anyhow::Result<Reply> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("redis closed the connection");
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (kind, rest) = line.split_at_checked(1).context("empty RESP line")?;
        Ok(match kind {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(rest.parse().context("bad RESP integer")?),
            "$" => {
                let n: i64 = rest.parse().context("bad RESP bulk length")?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut b = vec![0u8; n as usize + 2];
                    self.reader.read_exact(&mut b)?;
                    b.truncate(n as usize);
                    Reply::Bulk(Some(b))
                }
            }
            "*" => {
                let n: i64 = rest.parse().context("bad RESP array length")?;
                if n < 0 {
                    Reply::Array(None)
                } else {
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        items.push(self.read_reply()?);
                    }
                    Reply::Array(Some(items))
                }
            }
            other => bail!("unexpected RESP type byte {other:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode(&[b"SET", b"k", b"hello"], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n");
        let mut d = Vec::new();
        push_decimal(&mut d, 0);
        push_decimal(&mut d, 1234567890);
        assert_eq!(d, b"01234567890");
    }
}
