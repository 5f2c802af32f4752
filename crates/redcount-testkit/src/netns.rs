//! Hosts on one machine: Linux network namespaces joined by veth pairs to a bridge in a namespace of
//! their own, with addresses used only inside them (10.99.0.0/24), so a test can cut, one way or
//! both, what crosses between two "hosts": packets dropped silently, as a real partition does (a
//! sender's TCP retransmits into the void), while both still reach everyone else. Root only:
//! [`Lan::new`] says why when it cannot. Everything made is deleted on drop, processes left inside
//! killed first; the machine's own namespace is not touched.
//!
//! The drops use only what the smallest kernels have (an `htb` root qdisc, `u32` filters, a
//! `pfifo` of length 0), not `tc` actions or `netem`, which the kernels of some VMs lack.

use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::FaultProxy;

/// A bridge and the hosts on it.
pub struct Lan {
    /// Namespace names start with this (unique per Lan).
    tag: String,
    hub: String,
    hosts: Vec<String>,
}

/// One namespace on the Lan: its name and address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name (`ip netns exec NAME ...`).
    pub ns: String,
    /// Its address on the Lan.
    pub addr: String,
    /// Its interface (inside its namespace).
    dev: String,
}

impl Host {
    /// Starts `redis-server` here (a Sentinel with `sentinel`) from `conf`, written to
    /// `dir/NAME.conf` so its password stays off the command line.
    pub fn spawn_redis(
        &self,
        dir: &Path,
        name: &str,
        conf: &str,
        sentinel: bool,
    ) -> io::Result<Child> {
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, conf)?;
        let mut cmd = self.command("redis-server");
        cmd.arg(&path);
        if sentinel {
            cmd.arg("--sentinel");
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()
    }

    /// A Redis on this host's loopback (port 6379, `password`, files in `dir`) reachable from the
    /// other hosts only through a [`FaultProxy`] on this host's address, port 7000, whose faults
    /// (a delay, say) every client then crosses. Returns the server, the proxy and the URL to use.
    pub fn redis_behind_proxy(
        &self,
        dir: &Path,
        password: &str,
    ) -> io::Result<(Child, FaultProxy, String)> {
        let conf = format!(
            "port 6379\nbind 127.0.0.1\nrequirepass {password}\nsave \"\"\nappendonly no\n\
             dir {0}\nlogfile {0}/{1}-redis.log\n",
            dir.display(),
            self.ns
        );
        let mut server = self.spawn_redis(dir, &format!("{}-redis", self.ns), &conf, false)?;
        // The proxy's threads are started inside this host and stay there.
        let proxy = self.enter(|| -> io::Result<FaultProxy> {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect("127.0.0.1:6379").is_err() {
                if Instant::now() > deadline {
                    return Err(io::Error::other(format!(
                        "redis-server in host {} did not listen within 10 s",
                        self.ns
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            FaultProxy::start_on(&format!("{}:7000", self.addr), "127.0.0.1:6379")
        });
        match proxy {
            Ok(proxy) => Ok((
                server,
                proxy,
                format!("redis://:{password}@{}:7000", self.addr),
            )),
            Err(err) => {
                let _ = server.kill();
                let _ = server.wait();
                Err(err)
            }
        }
    }

    /// Runs `f` on a thread inside this host's namespace (setns applies to one thread), so a test
    /// can talk to the host's servers with its own client code.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.ns);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = std::fs::File::open(&path)
                        .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("cannot enter {path}: {e}"));
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `program` run inside this host's namespace (`ip netns exec`, which execs it: the child's pid
    /// is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn tc(ns: &str, args: &[&str]) -> io::Result<()> {
    let mut all = vec!["netns", "exec", ns, "tc"];
    all.extend_from_slice(args);
    ip(&all)
}

impl Lan {
    /// A new, empty Lan; Err with the reason (not root, no `ip`) when this machine cannot make one.
    pub fn new() -> io::Result<Lan> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err(io::Error::other("network namespaces need root"));
        }
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tag = format!("rc{}x{n}", std::process::id());
        let hub = format!("{tag}-hub");
        ip(&["netns", "add", &hub])?;
        let lan = Lan {
            tag,
            hub,
            hosts: Vec::new(),
        };
        ip(&["-n", &lan.hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &lan.hub, "link", "set", "br0", "up"])?;
        Ok(lan)
    }

    /// Adds a host named `name` (a short word) with the next address.
    pub fn host(&mut self, name: &str) -> io::Result<Host> {
        let index = self.hosts.len() + 1;
        let ns = format!("{}-{name}", self.tag);
        ip(&["netns", "add", &ns])?;
        self.hosts.push(ns.clone());
        let dev = "eth0".to_string();
        let hub_end = format!("h{index}");
        ip(&[
            "-n", &self.hub, "link", "add", &hub_end, "type", "veth", "peer", "name", &dev,
            "netns", &ns,
        ])?;
        ip(&["-n", &self.hub, "link", "set", &hub_end, "master", "br0"])?;
        ip(&["-n", &self.hub, "link", "set", &hub_end, "up"])?;
        let addr = format!("10.99.0.{index}");
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &dev])?;
        ip(&["-n", &ns, "link", "set", &dev, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        // Traffic goes to class 1:1 unless a filter of drop_from() sends it to 1:2, whose queue
        // holds nothing: every packet put there is dropped.
        tc(
            &ns,
            &[
                "qdisc", "add", "dev", &dev, "root", "handle", "1:", "htb", "default", "1",
            ],
        )?;
        for class in ["1:1", "1:2"] {
            tc(
                &ns,
                &[
                    "class", "add", "dev", &dev, "parent", "1:", "classid", class, "htb", "rate",
                    "10gbit",
                ],
            )?;
        }
        tc(
            &ns,
            &[
                "qdisc", "add", "dev", &dev, "parent", "1:2", "handle", "2:", "pfifo", "limit", "0",
            ],
        )?;
        Ok(Host { ns, addr, dev })
    }

    /// Drops, silently, every packet `from` sends to `to` (one way). [`Lan::heal`] undoes.
    pub fn drop_from(&self, from: &Host, to: &Host) -> io::Result<()> {
        tc(
            &from.ns,
            &[
                "filter",
                "add",
                "dev",
                &from.dev,
                "parent",
                "1:",
                "protocol",
                "ip",
                "prio",
                "1",
                "u32",
                "match",
                "ip",
                "dst",
                &format!("{}/32", to.addr),
                "flowid",
                "1:2",
            ],
        )
    }

    /// A partition between `a` and `b`: nothing crosses either way; both still reach the others.
    pub fn cut(&self, a: &Host, b: &Host) -> io::Result<()> {
        self.drop_from(a, b)?;
        self.drop_from(b, a)
    }

    /// Removes every drop of [`Lan::cut`] / [`Lan::drop_from`] at `a` and at `b`.
    pub fn heal(&self, a: &Host, b: &Host) -> io::Result<()> {
        for h in [a, b] {
            tc(
                &h.ns,
                &["filter", "del", "dev", &h.dev, "parent", "1:", "prio", "1"],
            )?;
        }
        Ok(())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.hub)) {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let pid = nix::unistd::Pid::from_raw(pid);
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
