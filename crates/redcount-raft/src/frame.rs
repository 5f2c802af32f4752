//! RESP frames: what clients send (arrays of bulk strings, or an inline command typed into telnet)
//! and what Redis answers, in RESP2 and RESP3 (for a client that said `HELLO 3`). Hand-written
//! because the node needs both directions on plain tokio streams and passes most replies through
//! byte for byte; the grammar is a page of the Redis docs. A RESP3 frame sent to a RESP2 client is
//! written the way Redis itself writes it for RESP2 (a map as a flat array, a double as a bulk
//! string, ...), so one frame serves both.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// One RESP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// RESP2's null bulk string (`$-1`); RESP3's null (`_`) to a RESP3 client.
    Null,
    Array(Vec<Frame>),
    /// RESP2's null array (`*-1`); RESP3's null to a RESP3 client.
    NullArray,
    /// RESP3 from here on.
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    Push(Vec<Frame>),
    /// A double as Redis wrote it (`3.5`, `inf`).
    Double(String),
    Boolean(bool),
    BigNumber(String),
    /// A verbatim string: three format bytes, a colon, then the text (`txt:...`).
    Verbatim(Vec<u8>),
    BlobError(Vec<u8>),
}

/// The protocol a client speaks: 2 until it says `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Resp2,
    Resp3,
}

/// How large a frame a connection may send: nothing is allocated beyond these.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest line (a type byte and a number, or an inline command).
    pub line: usize,
    /// Longest bulk string.
    pub bulk: usize,
    /// Most elements of an array.
    pub elements: usize,
}

/// Before a client authenticated: enough for `AUTH`, `HELLO 3 AUTH user password`, `PING`, `QUIT`.
pub const BEFORE_AUTH: Limits = Limits {
    line: 1024,
    bulk: 1024,
    elements: 8,
};

/// Replies of the node's own redis-server (trusted; an error line may be long).
pub const FROM_REDIS: Limits = Limits {
    line: 16 * 1024 * 1024,
    bulk: 1024 * 1024 * 1024,
    elements: 1024 * 1024 * 1024,
};

/// After: what Redis itself accepts by default (512 MiB bulk strings).
pub const AFTER_AUTH: Limits = Limits {
    line: 64 * 1024,
    bulk: 512 * 1024 * 1024,
    elements: 64 * 1024 * 1024,
};

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

    /// Appends the wire form of the frame in `proto` to `out`.
    pub fn encode_for(&self, proto: Proto, out: &mut Vec<u8>) {
        let resp3 = proto == Proto::Resp3;
        let aggregate = |out: &mut Vec<u8>, kind: u8, items: &[Frame]| {
            line(out, kind, items.len().to_string().as_bytes());
            for item in items {
                item.encode_for(proto, out);
            }
        };
        match self {
            Frame::Simple(s) => line(out, b'+', s.as_bytes()),
            Frame::Error(s) => line(out, b'-', s.replace(['\r', '\n'], " ").as_bytes()),
            Frame::Integer(n) => line(out, b':', n.to_string().as_bytes()),
            Frame::Bulk(b) => blob(out, b'$', b),
            Frame::Null | Frame::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Frame::Null => out.extend_from_slice(b"$-1\r\n"),
            Frame::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Frame::Array(items) => aggregate(out, b'*', items),
            Frame::Map(pairs) => {
                // RESP2 has no map: the same pairs as a flat array, as Redis writes it.
                let (kind, len) = if resp3 {
                    (b'%', pairs.len())
                } else {
                    (b'*', 2 * pairs.len())
                };
                line(out, kind, len.to_string().as_bytes());
                for (k, v) in pairs {
                    k.encode_for(proto, out);
                    v.encode_for(proto, out);
                }
            }
            Frame::Set(items) => aggregate(out, if resp3 { b'~' } else { b'*' }, items),
            Frame::Push(items) => aggregate(out, if resp3 { b'>' } else { b'*' }, items),
            Frame::Double(d) if resp3 => line(out, b',', d.as_bytes()),
            Frame::Double(d) => blob(out, b'$', d.as_bytes()),
            Frame::Boolean(b) if resp3 => line(out, b'#', if *b { b"t" } else { b"f" }),
            Frame::Boolean(b) => line(out, b':', if *b { b"1" } else { b"0" }),
            Frame::BigNumber(n) if resp3 => line(out, b'(', n.as_bytes()),
            Frame::BigNumber(n) => blob(out, b'$', n.as_bytes()),
            Frame::Verbatim(v) if resp3 => blob(out, b'=', v),
            Frame::Verbatim(v) => blob(out, b'$', v.get(4..).unwrap_or_default()),
            Frame::BlobError(e) if resp3 => blob(out, b'!', e),
            Frame::BlobError(e) => {
                let text = String::from_utf8_lossy(e).replace(['\r', '\n'], " ");
                line(out, b'-', text.as_bytes())
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_for(Proto::Resp2)
    }

    pub fn to_bytes_for(&self, proto: Proto) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_for(proto, &mut out);
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

/// A length-prefixed string (`$`, `=`, `!`).
fn blob(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    line(out, kind, body.len().to_string().as_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Reads one line without its CRLF, at most `limit` bytes; None at a clean end of stream.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let n = (&mut *reader)
        .take(limit as u64 + 2)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() > limit {
            return Err(invalid(format!("a line longer than {limit} bytes")));
        }
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

/// Reads one frame within `limits`; None when the peer closed the connection between frames.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limits: Limits,
) -> std::io::Result<Option<Frame>> {
    let Some(line) = read_line(reader, limits.line).await? else {
        return Ok(None);
    };
    read_after(reader, line, limits).await
}

/// The frame that starts with `line` (already read).
async fn read_after<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: Vec<u8>,
    limits: Limits,
) -> std::io::Result<Option<Frame>> {
    let Some((&kind, body)) = line.split_first() else {
        // An empty inline command: nothing to do, read the next one.
        return Box::pin(read_frame(reader, limits)).await;
    };
    let frame = match kind {
        b'*' | b'~' | b'>' => {
            let len = number(body)?;
            if len < 0 {
                Frame::NullArray
            } else {
                let items = elements(reader, len, limits).await?;
                match kind {
                    b'*' => Frame::Array(items),
                    b'~' => Frame::Set(items),
                    _ => Frame::Push(items),
                }
            }
        }
        b'%' | b'|' => {
            let len = usize::try_from(number(body)?).map_err(|_| invalid("bad map length"))?;
            let len =
                i64::try_from(len.saturating_mul(2)).map_err(|_| invalid("bad map length"))?;
            let mut items = elements(reader, len, limits).await?.into_iter();
            if kind == b'|' {
                // An attribute: metadata about the reply that follows, which is what counts.
                return Box::pin(read_frame(reader, limits)).await;
            }
            let mut pairs = Vec::with_capacity(items.len() / 2);
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                pairs.push((k, v));
            }
            Frame::Map(pairs)
        }
        k if SCALARS.contains(&k) => scalar(reader, kind, body, limits).await?,
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

/// Type bytes of the frames that are not aggregates.
const SCALARS: &[u8] = b"+-:$,#_(=!";

/// The `len` elements of an aggregate. Elements are parsed in this loop (a commit has 100k+ of
/// them); only a nested aggregate recurses.
async fn elements<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    len: i64,
    limits: Limits,
) -> std::io::Result<Vec<Frame>> {
    let len = usize::try_from(len).map_err(|_| invalid("bad aggregate length"))?;
    if len > limits.elements {
        return Err(invalid(format!(
            "an aggregate of {len} elements is too long"
        )));
    }
    let mut items = Vec::with_capacity(len.min(1 << 16));
    for _ in 0..len {
        let Some(line) = read_line(reader, limits.line).await? else {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        };
        let item = match line.split_first() {
            Some((&k, b)) if SCALARS.contains(&k) => scalar(reader, k, b, limits).await?,
            Some(_) => match Box::pin(read_after(reader, line, limits)).await? {
                Some(item) => item,
                None => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            },
            None => return Err(invalid("empty line inside an aggregate")),
        };
        items.push(item);
    }
    Ok(items)
}

/// A frame that is not an aggregate, whose first line (`kind`, `body`) was read.
async fn scalar<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    kind: u8,
    body: &[u8],
    limits: Limits,
) -> std::io::Result<Frame> {
    let text = || String::from_utf8_lossy(body).into_owned();
    Ok(match kind {
        b'+' => Frame::Simple(text()),
        b'-' => Frame::Error(text()),
        b':' => Frame::Integer(number(body)?),
        b',' => Frame::Double(text()),
        b'#' => Frame::Boolean(body == b"t"),
        b'_' => Frame::Null,
        b'(' => Frame::BigNumber(text()),
        b'$' | b'=' | b'!' => {
            let len = number(body)?;
            if len < 0 {
                return Ok(Frame::Null);
            }
            let len = usize::try_from(len).map_err(|_| invalid("bad bulk length"))?;
            if len > limits.bulk {
                return Err(invalid(format!("bulk string of {len} bytes is too long")));
            }
            let mut data = vec![0; len + 2];
            reader.read_exact(&mut data).await?;
            data.truncate(len);
            match kind {
                b'$' => Frame::Bulk(data),
                b'=' => Frame::Verbatim(data),
                _ => Frame::BlobError(data),
            }
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
        match read_frame(&mut reader, AFTER_AUTH).await {
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
    async fn resp3_frames_survive_a_round_trip_and_go_to_resp2_as_redis_writes_them() {
        let frame = Frame::Array(vec![
            Frame::Map(vec![(
                Frame::bulk("k"),
                Frame::Set(vec![Frame::Double("1.5".into()), Frame::Boolean(true)]),
            )]),
            Frame::BigNumber("123456789012345678901234567890".into()),
            Frame::Verbatim(b"txt:role:master\r\n".to_vec()),
            Frame::BlobError(b"ERR long".to_vec()),
            Frame::Push(vec![Frame::bulk("message")]),
            Frame::Null,
        ]);
        assert_eq!(parse(&frame.to_bytes_for(Proto::Resp3)).await, frame);
        assert_eq!(
            parse(&frame.to_bytes()).await,
            Frame::Array(vec![
                Frame::Array(vec![
                    Frame::bulk("k"),
                    Frame::Array(vec![Frame::bulk("1.5"), Frame::Integer(1)]),
                ]),
                Frame::bulk("123456789012345678901234567890"),
                Frame::bulk("role:master\r\n"),
                Frame::Error("ERR long".into()),
                Frame::Array(vec![Frame::bulk("message")]),
                Frame::Null,
            ])
        );
        // An attribute is skipped: the reply is what follows it.
        assert_eq!(parse(b"|1\r\n+ttl\r\n:3\r\n+OK\r\n").await, Frame::ok());
        assert_eq!(Frame::NullArray.to_bytes_for(Proto::Resp3), b"_\r\n");
    }

    #[tokio::test]
    async fn inline_commands_are_split_on_whitespace() {
        let frame = parse(b"PING  hello\r\n").await;
        assert_eq!(
            command_args(frame),
            Ok(vec![b"PING".to_vec(), b"hello".to_vec()])
        );
    }

    /// Any bytes at all: a frame or an error, never a panic; before AUTH nothing larger than the
    /// limits is taken in (a frame that parses is small).
    #[test]
    fn any_bytes_give_a_frame_or_an_error() {
        use proptest::prelude::*;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let pieces = prop_oneof![
            Just(b"*".to_vec()),
            Just(b"$".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"-1".to_vec()),
            Just(b"536870912".to_vec()),
            Just(b"99999999999999999999".to_vec()),
            Just(b"3".to_vec()),
            Just(b"+OK".to_vec()),
            Just(b":".to_vec()),
            Just(b"%".to_vec()),
            Just(b"~".to_vec()),
            Just(b"|".to_vec()),
            Just(b"=".to_vec()),
            Just(b"_".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..16),
        ];
        proptest!(|(parts in proptest::collection::vec(pieces, 0..24))| {
            let bytes: Vec<u8> = parts.concat();
            let mut reader = tokio::io::BufReader::new(bytes.as_slice());
            let result = runtime.block_on(read_frame(&mut reader, BEFORE_AUTH));
            if let Ok(Some(frame)) = result {
                prop_assert!(frame.to_bytes().len() <= bytes.len() + 64);
            }
        });
    }
}
