//! Interrupted jobs: running the same `run` again resumes the job an interrupted run left (and is
//! exact), other settings or inputs are refused naming the difference, `--replace` starts over,
//! `jobs cancel` stops a job, and workers that are gone never show as live.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use redcount_server::{RedisServer, ServerOptions};
use redcount_testkit::corpus::write_text_corpus;

fn server() -> RedisServer {
    RedisServer::start(ServerOptions::default()).expect("redis-server starts")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `run` of `input` as job `job` on `url`, one slow worker (so there is time to interrupt it),
/// small tasks (so progress shows task by task), writing `out`; then `extra`.
fn run_args(url: &str, job: &str, input: &Path, out: &Path, extra: &[&str]) -> JobCommand {
    common::job()
        .redis(url)
        .job(job)
        .workers(1)
        .worker_slow("40ms")
        .flag("--split-bytes", "16KiB")
        .out(out)
        .args(extra)
        .input(input)
}

/// Waits (bounded) until the job has settled at least `tasks` tasks.
fn wait_for_progress(url: &str, job: &str, tasks: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while try_status(url, job).is_none_or(|s| s.done + s.dead < tasks) {
        assert!(Instant::now() < deadline, "job {job} made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A corpus of 60 files (~300 KB: about 20 tasks of 16 KiB), and its independent count.
fn corpus(dir: &Path) -> (std::path::PathBuf, Counts) {
    let input = dir.join("in");
    let files = write_text_corpus(&input, 60, 2_000, 8_000, 41);
    let expected = oracle_count(&files);
    (input, expected)
}

/// Starts the job and interrupts its driver (Ctrl-C) once a few tasks are done: the run exits
/// 130, says how to resume, and leaves the job unfinished with no live worker.
fn interrupt(url: &str, job: &str, args: &JobCommand) {
    let driver = args.spawn();
    wait_for_progress(url, job, 3);
    signal(&driver, Signal::SIGINT);
    let stopped = wait_output(driver, Duration::from_secs(30), "the interrupted run");
    assert_eq!(stopped.status.code(), Some(130), "{}", stderr(&stopped));
    assert!(
        stderr(&stopped).contains(&format!("job '{job}' left unfinished at"))
            && stderr(&stopped).contains("run the same command again to resume it")
            && stderr(&stopped).contains(&format!("redcount jobs cancel {job}")),
        "{}",
        stderr(&stopped)
    );
    // try_status counts workers heard from within a minute as live: the stopped ones left.
    let status = job_status(url, job);
    assert!(
        !status.finished,
        "the job was meant to be interrupted early"
    );
    assert_eq!(
        status.live_workers, 0,
        "the stopped workers still show as live"
    );
}

#[test]
fn running_an_interrupted_job_again_resumes_it_and_is_exact() {
    let server = server();
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let (input, expected) = corpus(dir.path());
    let out = dir.path().join("out.tsv");
    let args = run_args(&url, "ctrlc", &input, &out, &[]);
    interrupt(&url, "ctrlc", &args);
    let done_before = job_status(&url, "ctrlc").done;

    let again = args.output();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("job 'ctrlc' at") && stderr(&again).contains("resuming it"),
        "{}",
        stderr(&again)
    );
    assert_same_counts(&expected, &read_out_file(&out));
    let status = job_status(&url, "ctrlc");
    assert!(status.finished && status.done >= done_before);
    assert_eq!(
        status.live_workers, 0,
        "a finished job shows no live workers"
    );

    // A finished job is not run again: the message says where its result is.
    let finished = args.output();
    assert_eq!(finished.status.code(), Some(1));
    assert!(
        stderr(&finished).contains("is already finished")
            && stderr(&finished).contains("redcount counts --job ctrlc"),
        "{}",
        stderr(&finished)
    );
}

#[test]
fn other_settings_or_inputs_are_refused_by_name_and_replace_starts_over() {
    let server = server();
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let (input, _) = corpus(dir.path());
    let out = dir.path().join("out.tsv");
    interrupt(
        &url,
        "changed",
        &run_args(&url, "changed", &input, &out, &[]),
    );

    let lowercase = run_args(&url, "changed", &input, &out, &["--lowercase"]).output();
    assert_eq!(lowercase.status.code(), Some(1));
    assert!(
        stderr(&lowercase).contains("--lowercase off (this run: on)")
            && stderr(&lowercase).contains("--replace"),
        "{}",
        stderr(&lowercase)
    );

    std::fs::write(input.join("added.txt"), "one more file\n").expect("add a file");
    let added = run_args(&url, "changed", &input, &out, &[]).output();
    assert_eq!(added.status.code(), Some(1));
    assert!(
        stderr(&added).contains("its inputs changed since it started")
            && stderr(&added).contains("planned 60 files")
            && stderr(&added).contains("this run 61 files"),
        "{}",
        stderr(&added)
    );

    let replaced = run_args(&url, "changed", &input, &out, &["--replace"]).output();
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    assert!(
        stderr(&replaced).contains("job 'changed': replaced"),
        "{}",
        stderr(&replaced)
    );
    assert_same_counts(&oracle_count(&files_below(&input)), &read_out_file(&out));
}

#[test]
fn jobs_cancel_stops_a_running_job_and_its_driver_says_so() {
    let server = server();
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let (input, _) = corpus(dir.path());
    let out = dir.path().join("out.tsv");
    let driver = run_args(&url, "stopme", &input, &out, &[]).spawn();
    wait_for_progress(&url, "stopme", 2);
    let cancel = run(&["jobs", "cancel", "stopme", "--redis", &url]);
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    let said = String::from_utf8_lossy(&cancel.stdout);
    assert!(said.contains("cancelled job stopme at"), "{said}");

    let ended = wait_output(driver, Duration::from_secs(30), "the cancelled run");
    assert_eq!(ended.status.code(), Some(1), "{}", stderr(&ended));
    assert!(stderr(&ended).contains("cancelled"), "{}", stderr(&ended));
    let status = job_status(&url, "stopme");
    assert_eq!(status.stopped(), Some("cancelled"));
    assert_eq!(status.live_workers, 0);

    let jobs = run(&["jobs", "--redis", &url]);
    let table = String::from_utf8_lossy(&jobs.stdout);
    assert!(
        table.contains("stopme") && table.contains("cancelled"),
        "{table}"
    );
    // Cancelling it again says it is over; a job that is not there is an error naming it.
    let again = run(&["jobs", "cancel", "stopme", "--redis", &url]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already over"));
    let missing = run(&["jobs", "cancel", "nosuch", "--redis", &url]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("nosuch"), "{}", stderr(&missing));
}
