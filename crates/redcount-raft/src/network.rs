//! Raft RPCs between nodes: one TCP connection per peer client, each RPC a length-prefixed bincode
//! frame answered in order. A connection opens with [`RPC_MAGIC`], which lets the node serve clients
//! (RESP) and peers on one port, then both ends prove they hold the group's secret
//! ([`crate::peer_auth`]) before any frame is read. The fault switch [`Isolation`] drops all of a node's Raft traffic,
//! which is how tests partition a leader away from the others.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::types::{NodeId, Raft, TypeConfig};

/// First bytes of a peer connection; no RESP command starts with a zero byte. (Version 2: the
/// secret handshake follows.)
pub const RPC_MAGIC: &[u8; 8] = b"\0rcraft2";

/// Frames above this are refused, even from an authenticated peer (snapshot chunks are 3 MiB,
/// replication batches 512 KiB, a single entry a few MiB).
const MAX_RPC_BYTES: usize = 256 << 20;

/// The node's fault switch: while on, it neither sends nor answers Raft RPCs.
#[derive(Clone, Default)]
pub struct Isolation(Arc<AtomicBool>);

impl Isolation {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Serialize, Deserialize)]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

#[derive(Serialize, Deserialize)]
enum Response {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
}

async fn write_msg<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> std::io::Result<()> {
    let body = bincode::serialize(msg).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    w.write_all(&out).await?;
    w.flush().await
}

async fn read_msg<R: AsyncRead + Unpin, T: serde::de::DeserializeOwned>(
    r: &mut R,
) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_RPC_BYTES {
        return Err(std::io::Error::other(format!(
            "RPC frame of {len} bytes is too large"
        )));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    bincode::deserialize(&body).map_err(std::io::Error::other)
}

/// Serves one peer connection (after its magic bytes were read) until it closes.
pub async fn serve_peer(stream: TcpStream, raft: Raft, isolation: Isolation) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let request: Request = match read_msg(&mut r).await {
            Ok(req) => req,
            Err(_) => return,
        };
        if isolation.is_on() {
            // Partitioned: the request never arrived, and neither will an answer.
            return;
        }
        let response = match request {
            Request::Append(rpc) => Response::Append(raft.append_entries(rpc).await),
            Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
            Request::Snapshot(rpc) => Response::Snapshot(raft.install_snapshot(rpc).await),
        };
        if write_msg(&mut w, &response).await.is_err() {
            return;
        }
    }
}

/// Makes one [`PeerClient`] per replication stream or election.
#[derive(Clone)]
pub struct Network {
    pub isolation: Isolation,
    /// The group's secret, proven on every connection to a peer.
    pub secret: Arc<Vec<u8>>,
    /// Peers dialled elsewhere than their membership address (`NodeConfig::dial`).
    pub dial: Arc<BTreeMap<NodeId, String>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: self.dial.get(&target).unwrap_or(&node.addr).clone(),
            stream: None,
            isolation: self.isolation.clone(),
            secret: self.secret.clone(),
        }
    }
}

/// A lazily (re)connected RPC channel to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    stream: Option<BufReader<TcpStream>>,
    isolation: Isolation,
    secret: Arc<Vec<u8>>,
}

type RpcErr<E> = RPCError<NodeId, BasicNode, E>;

impl PeerClient {
    async fn send(&mut self, request: Request, ttl: Duration) -> Result<Response, std::io::Error> {
        if self.isolation.is_on() {
            self.stream = None;
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "this node is isolated by its fault switch",
            ));
        }
        let result = tokio::time::timeout(ttl, async {
            if self.stream.is_none() {
                let mut s = TcpStream::connect(&self.addr).await?;
                s.set_nodelay(true)?;
                s.write_all(RPC_MAGIC).await?;
                crate::peer_auth::prove_as_dialer(&mut s, &self.secret).await?;
                self.stream = Some(BufReader::new(s));
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(std::io::ErrorKind::NotConnected.into());
            };
            write_msg(stream.get_mut(), &request).await?;
            read_msg::<_, Response>(stream).await
        })
        .await;
        let outcome = match result {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer from node {} at {} within {ttl:?}",
                    self.target, self.addr
                ),
            )),
        };
        if outcome.is_err() {
            // The stream may hold half a reply: never reuse it.
            self.stream = None;
        }
        outcome
    }

    fn unreachable<E: std::error::Error>(&self, err: std::io::Error) -> RpcErr<E> {
        if err.kind() == std::io::ErrorKind::TimedOut {
            RPCError::Network(NetworkError::new(&err))
        } else {
            RPCError::Unreachable(Unreachable::new(&err))
        }
    }
}

fn mismatch(what: &str) -> std::io::Error {
    std::io::Error::other(format!(
        "peer answered a {what} request with another kind of reply"
    ))
}

impl PeerClient {
    /// Sends `request` and turns the peer's answer into what openraft expects: `pick` takes the
    /// matching reply out of the response (None for any other kind).
    async fn call<T, E: std::error::Error>(
        &mut self,
        request: Request,
        option: RPCOption,
        what: &str,
        pick: impl FnOnce(Response) -> Option<Result<T, E>>,
    ) -> Result<T, RpcErr<E>> {
        match self.send(request, option.hard_ttl()).await {
            Ok(response) => match pick(response) {
                Some(Ok(reply)) => Ok(reply),
                Some(Err(e)) => Err(RPCError::RemoteError(openraft::error::RemoteError::new(
                    self.target,
                    e,
                ))),
                None => Err(RPCError::Network(NetworkError::new(&mismatch(what)))),
            },
            Err(e) => Err(self.unreachable(e)),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        self.call(Request::Append(rpc), option, "append", |r| match r {
            Response::Append(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(Request::Snapshot(rpc), option, "snapshot", |r| match r {
            Response::Snapshot(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        self.call(Request::Vote(rpc), option, "vote", |r| match r {
            Response::Vote(reply) => Some(reply),
            _ => None,
        })
        .await
    }
}
