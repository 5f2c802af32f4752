//! A plain async connection to the node's own redis-server (the state machine): pipelined commands
//! in, frames out. Used by the apply loop and by each client session for reads.

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::frame::{read_frame, Frame, Proto};

/// One connection to the local Redis.
pub struct LocalConn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl LocalConn {
    /// Connects to 127.0.0.1:`port`, authenticates, and speaks `proto`.
    pub async fn connect(port: u16, password: &str, proto: Proto) -> std::io::Result<LocalConn> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let mut con = LocalConn {
            reader: BufReader::with_capacity(64 * 1024, r),
            writer: w,
        };
        let reply = con
            .call(&[vec![b"AUTH".to_vec(), password.as_bytes().to_vec()]])
            .await?;
        if let Some(Frame::Error(e)) = reply.first() {
            return Err(std::io::Error::other(format!(
                "the node's redis on port {port} refused AUTH: {e}"
            )));
        }
        if proto == Proto::Resp3 {
            let reply = con.call(&[args(&["HELLO", "3"])]).await?;
            if let Some(Frame::Error(e)) = reply.first() {
                return Err(std::io::Error::other(format!(
                    "the node's redis on port {port} refused HELLO 3: {e}"
                )));
            }
        }
        Ok(con)
    }

    /// Sends all commands in one write and reads one reply per command.
    pub async fn call(&mut self, commands: &[Vec<Vec<u8>>]) -> std::io::Result<Vec<Frame>> {
        let mut out = Vec::new();
        for args in commands {
            out.extend_from_slice(&crate::types::Command::from_args(args).resp);
        }
        self.call_raw(&out, commands.len()).await
    }

    /// Sends already encoded commands and reads `replies` replies.
    pub async fn call_raw(&mut self, bytes: &[u8], replies: usize) -> std::io::Result<Vec<Frame>> {
        self.writer.write_all(bytes).await?;
        let mut out = Vec::with_capacity(replies);
        for _ in 0..replies {
            match read_frame(&mut self.reader, crate::frame::FROM_REDIS).await? {
                Some(frame) => out.push(frame),
                None => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            }
        }
        Ok(out)
    }

    /// One command, one reply.
    pub async fn call_one(&mut self, args: Vec<Vec<u8>>) -> std::io::Result<Frame> {
        let mut replies = self.call(&[args]).await?;
        replies
            .pop()
            .ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
    }
}

/// `["GET", "k"]`-style argument vectors from string slices.
pub fn args(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}
