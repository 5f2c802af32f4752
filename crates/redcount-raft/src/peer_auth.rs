//! Peers prove they hold the group's secret before a single RPC is read: a mutual HMAC-SHA256
//! challenge-response on every new peer connection. The dialer sends a fresh nonce; the listener
//! answers with its own nonce and a MAC over both; the dialer checks it and answers with its MAC over
//! both, in the other order and under another label (so no answer can be reflected or replayed: each
//! side's nonce is new for every connection). Until both MACs check out, nothing but these fixed-size
//! fields is read or allocated. The secret is the group's password (from `--requirepass-file`, never a
//! command line). The connection itself is not encrypted: run groups over a trusted network or a tunnel.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const NONCE: usize = 32;
const MAC: usize = 32;

/// Longest a handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

fn refused(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, why.to_string())
}

fn mac(secret: &[u8], label: &[u8], first: &[u8], second: &[u8]) -> std::io::Result<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .map_err(|_| refused("the group secret cannot key an HMAC"))?;
    mac.update(label);
    mac.update(first);
    mac.update(second);
    Ok(mac)
}

fn nonce() -> std::io::Result<[u8; NONCE]> {
    let mut n = [0u8; NONCE];
    getrandom::fill(&mut n).map_err(|e| std::io::Error::other(format!("no OS randomness: {e}")))?;
    Ok(n)
}

/// The dialing side, right after the connection's magic bytes.
pub async fn prove_as_dialer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &[u8],
) -> std::io::Result<()> {
    let mine = nonce()?;
    stream.write_all(&mine).await?;
    let mut theirs = [0u8; NONCE];
    stream.read_exact(&mut theirs).await?;
    let mut their_mac = [0u8; MAC];
    stream.read_exact(&mut their_mac).await?;
    mac(secret, b"redcount-raft listener", &mine, &theirs)?
        .verify_slice(&their_mac)
        .map_err(|_| refused("the peer does not hold the group's secret"))?;
    let answer = mac(secret, b"redcount-raft dialer", &theirs, &mine)?.finalize();
    stream.write_all(&answer.into_bytes()).await?;
    stream.flush().await
}

/// The listening side, right after it read the connection's magic bytes.
pub async fn check_dialer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &[u8],
) -> std::io::Result<()> {
    let mut theirs = [0u8; NONCE];
    stream.read_exact(&mut theirs).await?;
    let mine = nonce()?;
    let proof = mac(secret, b"redcount-raft listener", &theirs, &mine)?.finalize();
    let mut out = Vec::with_capacity(NONCE + MAC);
    out.extend_from_slice(&mine);
    out.extend_from_slice(&proof.into_bytes());
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut their_mac = [0u8; MAC];
    stream.read_exact(&mut their_mac).await?;
    mac(secret, b"redcount-raft dialer", &mine, &theirs)?
        .verify_slice(&their_mac)
        .map_err(|_| refused("a peer connection without the group's secret"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn handshake(dialer: &'static [u8], listener: &'static [u8]) -> (bool, bool) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let d = tokio::spawn(async move { prove_as_dialer(&mut a, dialer).await.is_ok() });
        let l = tokio::spawn(async move { check_dialer(&mut b, listener).await.is_ok() });
        (d.await.unwrap_or(false), l.await.unwrap_or(false))
    }

    #[tokio::test]
    async fn peers_with_the_secret_pass_and_others_are_refused_both_ways() {
        assert_eq!(handshake(b"s3cret", b"s3cret").await, (true, true));
        // A dialer without the secret learns nothing it could use, and is refused.
        assert_eq!(handshake(b"guess", b"s3cret").await, (false, false));
    }

    #[tokio::test]
    async fn a_recorded_answer_is_refused_on_a_new_connection() {
        // Record a dialer's answer to one listener nonce, then replay it on a new connection.
        let (mut a, mut b) = tokio::io::duplex(1024);
        let d = tokio::spawn(async move { prove_as_dialer(&mut a, b"k").await });
        let mut dialer_nonce = [0u8; NONCE];
        b.read_exact(&mut dialer_nonce).await.expect("nonce");
        let listener_nonce = [7u8; NONCE];
        let proof = mac(
            b"k",
            b"redcount-raft listener",
            &dialer_nonce,
            &listener_nonce,
        )
        .expect("mac")
        .finalize()
        .into_bytes();
        b.write_all(&listener_nonce).await.expect("write");
        b.write_all(&proof).await.expect("write");
        let mut recorded = [0u8; MAC];
        b.read_exact(&mut recorded).await.expect("answer");
        d.await
            .expect("join")
            .expect("the dialer accepted the listener");

        let (mut attacker, mut node) = tokio::io::duplex(1024);
        let l = tokio::spawn(async move { check_dialer(&mut node, b"k").await });
        attacker.write_all(&dialer_nonce).await.expect("write");
        let mut fresh = [0u8; NONCE + MAC];
        attacker.read_exact(&mut fresh).await.expect("challenge");
        attacker.write_all(&recorded).await.expect("replay");
        assert!(l.await.expect("join").is_err(), "a replayed answer passed");
    }
}
