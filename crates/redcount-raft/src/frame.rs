//! RESP2 frames: what clients send (arrays of bulk strings, or an inline command typed into telnet)
//! and what Redis answers. Hand-written because the node needs both directions on plain tokio streams
//! and passes most replies through byte for byte; the grammar is five lines of the Redis docs.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Frame>),
    NullArray,
}

/// Larger bulk strings or arrays than Redis itself accepts by default are refused.
const MAX_BULK: usize = 512 * 1024 * 1024;
const MAX_ELEMENTS: usize = 64 * 1024 * 1024;

impl Frame {
    /// An error reply (`-CODE message`).
    pub fn error(message: impl Into<String>) -> Frame {
        Frame::Error(message.into())
    }

    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Frame {
        Frame::Bulk(bytes.into())
    }

    /// Appends the wire form of the frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Simple(s) => line(out, b'+', s.as_bytes()),
            Frame::Error(s) => line(out, b'-', s.replace(['\r', '\n'], " ").as_bytes()),
            Frame::Integer(n) => line(out, b':', n.to_string().as_bytes()),
            Frame::Bulk(b) => {
                line(out, b'$', b.len().to_string().as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Null => out.extend_from_slice(b"$-1\r\n"),
            Frame::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Frame::Array(items) => {
                line(out, b'*', items.len().to_string().as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// True for an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }
}

fn line(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Reads one line without its CRLF; None at a clean end of stream.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let n = reader.read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(buf))
}

fn number(bytes: &[u8]) -> std::io::Result<i64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            invalid(format!(
                "bad RESP number {:?}",
                String::from_utf8_lossy(bytes)
            ))
        })
}

/// Reads one frame; None when the peer closed the connection between frames.
pub async fn read_frame<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Frame>> {
    let Some(line) = read_line(reader).await? else {
        return Ok(None);
    };
    read_after(reader, line).await
}

/// The frame that starts with `line` (already read).
async fn read_after<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: Vec<u8>,
) -> std::io::Result<Option<Frame>> {
    let Some((&kind, body)) = line.split_first() else {
        // An empty inline command: nothing to do, read the next one.
        return Box::pin(read_frame(reader)).await;
    };
    let frame = match kind {
        b'*' => {
            let len = number(body)?;
            if len < 0 {
                Frame::NullArray
            } else {
                let len = usize::try_from(len).map_err(|_| invalid("bad array length"))?;
                if len > MAX_ELEMENTS {
                    return Err(invalid(format!("array of {len} elements is too long")));
                }
                let mut items = Vec::with_capacity(len.min(1 << 16));
                for _ in 0..len {
                    let Some(line) = read_line(reader).await? else {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    };
                    // Elements are parsed in this loop (a commit has 100k+ of them); only a nested
                    // array recurses.
                    let item = match line.split_first() {
                        Some((b'*', _)) => match Box::pin(read_after(reader, line)).await? {
                            Some(item) => item,
                            None => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                        },
                        Some((&k, b)) => scalar(reader, k, b).await?,
                        None => return Err(invalid("empty line inside an array")),
                    };
                    items.push(item);
                }
                Frame::Array(items)
            }
        }
        b'+' | b'-' | b':' | b'$' => scalar(reader, kind, body).await?,
        // An inline command (`PING`, `SET a b` typed into telnet or nc).
        _ => Frame::Array(
            line.split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .map(|w| Frame::Bulk(w.to_vec()))
                .collect(),
        ),
    };
    Ok(Some(frame))
}

/// A simple string, error, integer or bulk string whose first line (`kind`, `body`) was read.
async fn scalar<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    kind: u8,
    body: &[u8],
) -> std::io::Result<Frame> {
    Ok(match kind {
        b'+' => Frame::Simple(String::from_utf8_lossy(body).into_owned()),
        b'-' => Frame::Error(String::from_utf8_lossy(body).into_owned()),
        b':' => Frame::Integer(number(body)?),
        b'$' => {
            let len = number(body)?;
            if len < 0 {
                return Ok(Frame::Null);
            }
            let len = usize::try_from(len).map_err(|_| invalid("bad bulk length"))?;
            if len > MAX_BULK {
                return Err(invalid(format!("bulk string of {len} bytes is too long")));
            }
            let mut data = vec![0; len + 2];
            reader.read_exact(&mut data).await?;
            data.truncate(len);
            Frame::Bulk(data)
        }
        other => return Err(invalid(format!("unexpected RESP type byte {other:#04x}"))),
    })
}

/// A client command as its arguments (`[b"FCALL", b"rc_claim", ...]`).
pub fn command_args(frame: Frame) -> Result<Vec<Vec<u8>>, Frame> {
    let Frame::Array(items) = frame else {
        return Err(Frame::error(
            "ERR Protocol error: expected an array of bulk strings",
        ));
    };
    items
        .into_iter()
        .map(|item| match item {
            Frame::Bulk(b) => Ok(b),
            Frame::Simple(s) => Ok(s.into_bytes()),
            Frame::Integer(n) => Ok(n.to_string().into_bytes()),
            _ => Err(Frame::error("ERR Protocol error: expected bulk strings")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Frame {
        let mut reader = tokio::io::BufReader::new(bytes);
        match read_frame(&mut reader).await {
            Ok(Some(frame)) => frame,
            other => panic!("no frame in {bytes:?}: {other:?}"),
        }
    }

    #[tokio::test]
    async fn frames_survive_a_round_trip() {
        let frame = Frame::Array(vec![
            Frame::Simple("OK".into()),
            Frame::Error("ERR no".into()),
            Frame::Integer(-7),
            Frame::Bulk(b"a\r\nb".to_vec()),
            Frame::Null,
            Frame::NullArray,
            Frame::Array(vec![]),
        ]);
        assert_eq!(parse(&frame.to_bytes()).await, frame);
    }

    #[tokio::test]
    async fn inline_commands_are_split_on_whitespace() {
        let frame = parse(b"PING  hello\r\n").await;
        assert_eq!(
            command_args(frame),
            Ok(vec![b"PING".to_vec(), b"hello".to_vec()])
        );
    }
}
