//! Bad input: named errors up front for paths that name nothing; files that vanish, cannot be read or
//! are malformed CSV end in the dead stream by name while the rest is counted exactly; odd but valid
//! bytes are counted exactly.

#[path = "../common/mod.rs"]
mod common;
mod connecting;
mod formats;
mod missing;
mod names;

use std::time::{Duration, Instant};

use common::*;

/// Polls `status` until the job is sealed (the driver has planned and enqueued everything).
fn wait_sealed(url: &str, job: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = run(&["status", "--redis", url, "--job", job, "--json"]);
        if out.status.success() && json(&out)["stage"] == "sealed" {
            return;
        }
        assert!(Instant::now() < deadline, "job {job} was never sealed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
