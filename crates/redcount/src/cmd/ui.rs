//! `redcount ui`: the live dashboard of every job in a Redis, until Ctrl-C; and `--ui` of `run` and
//! `stream`, the dashboard of the job they run, for as long as they run.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use redcount_driver::{OnOpen, OpenGuard};
use redcount_ui::Dashboard;

use crate::cli::UiArgs;

pub fn ui(args: UiArgs) -> anyhow::Result<ExitCode> {
    let url = super::required_url(&args.redis)?;
    let stop = super::run::interrupt_flag();
    let dashboard = Dashboard::start(&url, args.listen, None)?;
    eprintln!(
        "dashboard of {} at http://{}/ (metrics at /metrics); Ctrl-C stops it",
        redcount_protocol::redact_url(&url),
        dashboard.addr()
    );
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(ExitCode::SUCCESS)
}

/// A hook that serves the job's dashboard on `listen` once the driver has created the job; the
/// session keeps it until the job's end has reached the open pages.
pub fn serve_job_dashboard(listen: SocketAddr) -> OnOpen {
    OnOpen(Arc::new(move |url: &str, job: &str| {
        let dashboard = Dashboard::start(url, listen, Some(job.to_string()))?;
        eprintln!("dashboard: {}", dashboard.job_url(job));
        Ok(Box::new(JobDashboard {
            dashboard,
            job: job.to_string(),
        }) as OpenGuard)
    }))
}

/// The dashboard of a `--ui` job, for as long as the driver's session lasts.
struct JobDashboard {
    dashboard: Dashboard,
    job: String,
}

impl Drop for JobDashboard {
    /// Dropped while the job's Redis still runs (even a private one): lets the open pages see how
    /// the job ended before the dashboard goes away; not when the user interrupted the run.
    fn drop(&mut self) {
        if !redcount_protocol::stop_requested() {
            self.dashboard
                .wait_until_settled(&self.job, Duration::from_secs(5));
        }
    }
}
