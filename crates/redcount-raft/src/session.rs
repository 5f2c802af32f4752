//! One client connection: RESP commands in, replies out, each routed by [`crate::commands::route`]:
//! writes through the Raft log, reads on the leader's Redis, node commands answered here.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::commands::{route, NodeCommand, Route};
use crate::frame::{command_args, read_frame, Frame, Proto, AFTER_AUTH, BEFORE_AUTH};
use crate::local::LocalConn;
use crate::replica::{redirect, Node};
use crate::types::Command;

/// A write that does not commit within this long is answered with TRYAGAIN (no quorum reachable).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one client until it disconnects.
pub async fn serve_client(stream: TcpStream, node: Arc<Node>) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, r);
    let mut session = Session {
        authed: node.password.is_none(),
        node,
        local: None,
        name: None,
        proto: Proto::Resp2,
    };
    loop {
        // Nothing large is read from a client that has not authenticated yet.
        let limits = if session.authed {
            AFTER_AUTH
        } else {
            BEFORE_AUTH
        };
        let frame = match read_frame(&mut reader, limits).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => {
                let reply =
                    Frame::error(format!("ERR Protocol error: {e}")).to_bytes_for(session.proto);
                let _ = w.write_all(&reply).await;
                return;
            }
        };
        let (reply, quit) = match command_args(frame) {
            Ok(args) => session.handle(args).await,
            Err(err) => (err.to_bytes_for(session.proto), false),
        };
        if w.write_all(&reply).await.is_err() || quit {
            return;
        }
    }
}

struct Session {
    node: Arc<Node>,
    /// This client's connection to the node's Redis (reads, blocking XREAD).
    local: Option<LocalConn>,
    authed: bool,
    /// `CLIENT SETNAME` / `HELLO ... SETNAME`.
    name: Option<Vec<u8>>,
    /// What the client speaks (`HELLO 3` switches to RESP3); `local` speaks the same, so reads
    /// come back from Redis in the client's own protocol.
    proto: Proto,
}

impl Session {
    async fn handle(&mut self, mut args: Vec<Vec<u8>>) -> (Vec<u8>, bool) {
        let route = route(&args);
        let is_auth = matches!(
            route,
            Route::Node(NodeCommand::Auth | NodeCommand::Hello | NodeCommand::Quit)
        );
        if !self.authed && !is_auth {
            return (
                Frame::error("NOAUTH Authentication required.").to_bytes_for(self.proto),
                false,
            );
        }
        let reply = match route {
            Route::Node(NodeCommand::Quit) => return (Frame::ok().to_bytes_for(self.proto), true),
            Route::Node(cmd) => self.node_command(cmd, &args).await,
            Route::Write { now_at } => {
                if let Some(i) = now_at {
                    args[i] = self.node.stamp_now().to_string().into_bytes();
                }
                // The library's replies are arrays, integers, strings and errors: the same bytes
                // in RESP2 and RESP3, so the machine's RESP2 reply goes to either client as is.
                return (self.write(args).await, false);
            }
            Route::Read => match self.confirm_leader().await {
                Ok(()) => self.local(args).await,
                Err(frame) => frame,
            },
            Route::Wakeup => match self.node.leader_lease() {
                Ok(()) => self.local(args).await,
                Err(frame) => frame,
            },
            Route::Replica => self.local(args).await,
            Route::Reject(frame) => frame,
        };
        (reply.to_bytes_for(self.proto), false)
    }

    /// Appends the command to the log and answers with the leader's own result of applying it.
    async fn write(&self, args: Vec<Vec<u8>>) -> Vec<u8> {
        let written = tokio::time::timeout(
            WRITE_TIMEOUT,
            self.node.raft.client_write(Command::from_args(&args)),
        )
        .await;
        match written {
            Ok(Ok(response)) => response.data.0,
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                redirect(f.leader_id, f.leader_node.as_ref()).to_bytes()
            }
            Ok(Err(e)) => {
                Frame::error(format!("TRYAGAIN raft: write not committed: {e}")).to_bytes()
            }
            Err(_) => Frame::error(format!(
                "TRYAGAIN raft: write not committed within {WRITE_TIMEOUT:?}: a majority of the \
                 group is unreachable; retry"
            ))
            .to_bytes(),
        }
    }

    /// The read barrier (`read_barrier.rs`): a read sees every acknowledged write.
    async fn confirm_leader(&self) -> Result<(), Frame> {
        self.node.reads.confirm().await
    }

    /// Runs a command on this node's Redis over the session's own connection.
    async fn local(&mut self, args: Vec<Vec<u8>>) -> Frame {
        if self.local.is_none() {
            let (port, password) = self.node.sm.machine().redis();
            match LocalConn::connect(port, password, self.proto).await {
                Ok(con) => self.local = Some(con),
                Err(e) => {
                    return Frame::error(format!("TRYAGAIN raft: node's redis unreachable: {e}"))
                }
            }
        }
        let Some(con) = self.local.as_mut() else {
            return Frame::error("TRYAGAIN raft: node's redis unreachable");
        };
        match con.call_one(args).await {
            Ok(frame) => frame,
            Err(e) => {
                // Redis restarted (a snapshot was installed): the next command reconnects.
                self.local = None;
                Frame::error(format!("TRYAGAIN raft: node's redis connection lost: {e}"))
            }
        }
    }

    async fn node_command(&mut self, cmd: NodeCommand, args: &[Vec<u8>]) -> Frame {
        let arg = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).into_owned());
        match cmd {
            NodeCommand::Ping => match args.get(1) {
                Some(msg) => Frame::bulk(msg.clone()),
                None => Frame::Simple("PONG".into()),
            },
            NodeCommand::Echo => args.get(1).cloned().map(Frame::Bulk).unwrap_or(Frame::Null),
            NodeCommand::Auth if args.len() < 2 => {
                Frame::error("ERR wrong number of arguments for 'auth' command")
            }
            NodeCommand::Auth => {
                let given = arg(args.len() - 1).unwrap_or_default();
                match &self.node.password {
                    Some(p) if *p != given => Frame::error(
                        "WRONGPASS invalid username-password pair or user is disabled.",
                    ),
                    _ => {
                        self.authed = true;
                        Frame::ok()
                    }
                }
            }
            NodeCommand::Hello => self.hello(args),
            NodeCommand::Client => match arg(1).map(|s| s.to_ascii_uppercase()).as_deref() {
                Some("SETNAME") => {
                    self.name = args.get(2).cloned();
                    Frame::ok()
                }
                Some("GETNAME") => self.name.clone().map(Frame::Bulk).unwrap_or(Frame::Null),
                Some("ID") => Frame::Integer(1),
                _ => Frame::ok(),
            },
            NodeCommand::Ok | NodeCommand::Quit => Frame::ok(),
            NodeCommand::Select => match arg(1).as_deref() {
                Some("0") => Frame::ok(),
                _ => Frame::error("ERR a redcount raft node has only database 0"),
            },
            NodeCommand::Role => self.node.role(),
            NodeCommand::Info => {
                Frame::Verbatim([b"txt:".as_slice(), self.node.info().as_bytes()].concat())
            }
            // A Raft node has no Redis persistence settings: its durability is the Raft log.
            NodeCommand::ConfigGet => Frame::Map(vec![]),
            // Every acknowledged write is already on a majority: report the other voters.
            NodeCommand::Wait => Frame::Integer(self.node.voters().saturating_sub(1) as i64),
            NodeCommand::Command => Frame::Array(vec![]),
            NodeCommand::Status => Frame::bulk(self.node.status_text()),
            NodeCommand::Isolate => {
                let on = arg(1).as_deref() == Some("1");
                self.node.isolation.set(on);
                tracing::warn!("fault switch: node isolated = {on}");
                Frame::ok()
            }
            NodeCommand::Snapshot => match self.node.raft.trigger().snapshot().await {
                Ok(()) => Frame::ok(),
                Err(e) => Frame::error(format!("ERR snapshot: {e}")),
            },
        }
    }

    /// `HELLO [protover [AUTH user password] [SETNAME name]]` as Redis answers it: the reply is a
    /// map (a flat array in RESP2), and `HELLO 3` switches the connection to RESP3.
    fn hello(&mut self, args: &[Vec<u8>]) -> Frame {
        let text = |i: usize| {
            args.get(i)
                .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        };
        let proto = match text(1).as_deref() {
            None => self.proto,
            Some("2") => Proto::Resp2,
            Some("3") => Proto::Resp3,
            Some(_) => return Frame::error("NOPROTO unsupported protocol version"),
        };
        let mut i = 2;
        while i < args.len() {
            match text(i).as_deref() {
                Some("AUTH") if i + 2 < args.len() => {
                    let given = String::from_utf8_lossy(&args[i + 2]).into_owned();
                    if self.node.password.as_deref().is_some_and(|p| p != given) {
                        return Frame::error(
                            "WRONGPASS invalid username-password pair or user is disabled.",
                        );
                    }
                    self.authed = true;
                    i += 3;
                }
                Some("SETNAME") if i + 1 < args.len() => {
                    self.name = Some(args[i + 1].clone());
                    i += 2;
                }
                _ => return Frame::error("ERR Syntax error in HELLO option"),
            }
        }
        if !self.authed {
            return Frame::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
                 HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
                 select the RESP protocol version at the same time",
            );
        }
        if proto != self.proto {
            self.proto = proto;
            // The session's connection to Redis reconnects speaking the new protocol.
            self.local = None;
        }
        let pair = |k: &str, v: Frame| (Frame::bulk(k.as_bytes().to_vec()), v);
        Frame::Map(vec![
            pair("server", Frame::bulk("redis")),
            pair("version", Frame::bulk("7.0.0")),
            pair(
                "proto",
                Frame::Integer(if proto == Proto::Resp3 { 3 } else { 2 }),
            ),
            pair("id", Frame::Integer(1)),
            pair("mode", Frame::bulk("standalone")),
            pair("role", Frame::bulk(self.node.redis_role())),
            pair("modules", Frame::Array(vec![])),
        ])
    }
}
