//! Owns the node's private redis-server from one long-lived thread. The server is started with
//! `PR_SET_PDEATHSIG`, which fires when the *thread* that started it ends; tokio's blocking threads
//! come and go, so every start and restart happens here, on a thread that lives as long as the node.

use std::path::PathBuf;
use std::sync::mpsc;

use redcount_server::{RedisServer, ServerOptions};
use tokio::sync::oneshot;

enum Op {
    Restart,
}

/// Handle to the keeper thread.
pub struct Keeper {
    ops: mpsc::Sender<(Op, oneshot::Sender<Result<(), String>>)>,
    /// Port and password of the server (stable across restarts).
    pub port: u16,
    pub password: String,
}

impl Keeper {
    /// Starts redis-server in `dir` (loading `dir/sm.rdb` if present) on a keeper thread.
    pub fn start(dir: PathBuf) -> anyhow::Result<Keeper> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (ops, op_rx) = mpsc::channel::<(Op, oneshot::Sender<Result<(), String>>)>();
        std::thread::Builder::new()
            .name("redis-keeper".into())
            .spawn(move || {
                let options = ServerOptions {
                    dir: Some(dir),
                    config: vec![
                        // The state machine: its durability is the Raft log plus snapshots.
                        "dbfilename sm.rdb".into(),
                        "enable-debug-command local".into(),
                        "rdbcompression no".into(),
                    ],
                };
                let mut server = match RedisServer::start(options) {
                    Ok(server) => {
                        let _ = ready_tx.send(Ok((server.port(), server.password().to_string())));
                        server
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                // Ends when the Keeper is dropped; the server is killed with it.
                for (op, reply) in op_rx {
                    let result = match op {
                        Op::Restart => server.restart().map_err(|e| e.to_string()),
                    };
                    let _ = reply.send(result);
                }
            })?;
        let (port, password) = ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the redis keeper thread ended"))?
            .map_err(|e| anyhow::anyhow!("the node's private redis-server: {e}"))?;
        Ok(Keeper {
            ops,
            port,
            password,
        })
    }

    /// Kills the server and starts it again from `sm.rdb`.
    pub async fn restart(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send((Op::Restart, tx))
            .map_err(|_| "the redis keeper thread ended".to_string())?;
        rx.await
            .map_err(|_| "the redis keeper thread ended".to_string())?
    }
}
