//! Planning: inputs (files and objects) -> tasks. Small inputs are one task each; large ones are cut
//! at whitespace (between records in CSV) into tasks of about `split_bytes`, so one huge input keeps
//! every worker busy.

use redcount_input::{split::split_file, FormatChoice, InputError, InputFile};
use redcount_protocol::{NewTask, PlanFacts};

/// The split size when the user sets none: about four tasks per worker, between 1 MiB and 64 MiB.
/// Bigger tasks mean fewer commits, and Redis pays per distinct word of every commit.
pub fn default_split_bytes(total_bytes: u64, workers: usize) -> u64 {
    (total_bytes / (4 * workers.max(1) as u64)).clamp(1 << 20, 64 << 20)
}

/// Cuts every input into tasks numbered from `first_seq`.
pub fn plan_tasks(
    files: &[InputFile],
    format: FormatChoice,
    split_bytes: u64,
    first_seq: u64,
) -> Vec<NewTask> {
    let mut tasks = Vec::with_capacity(files.len());
    let mut seq = first_seq;
    for file in files {
        let format = format.for_path(&file.path);
        // An input we cannot open for splitting stays one task; the worker reports the error.
        let ranges = split_file(file, format, split_bytes)
            .unwrap_or_else(|_: InputError| vec![(0, file.size)]);
        for (start, end) in ranges {
            tasks.push(NewTask {
                seq,
                path: file.path.clone(),
                start,
                end,
                format,
                version: file.version.clone(),
                more: Vec::new(),
                due_ms: None,
            });
            seq += 1;
        }
    }
    tasks
}

/// The split size of a job whose inputs are too many to list before planning starts (more than
/// [`LISTED_BEFORE_PLANNING`]): the largest default. So many inputs are most often many bytes, and
/// tiny ones are packed [`crate::planner::MAX_PIECES`] to a task whatever the split.
pub const SPLIT_OF_MANY_INPUTS: u64 = 64 << 20;

/// Inputs listed before the first is planned: when the listing ends within them, the split size
/// comes from their total ([`default_split_bytes`]); else it is [`SPLIT_OF_MANY_INPUTS`] and the
/// rest is planned and enqueued as it is listed. A count, not a time, so the same inputs always
/// give the same plan (a resumed job is planned again and checked by its digest).
pub const LISTED_BEFORE_PLANNING: usize = 20_000;

/// A batch job's tasks and their [`PlanFacts`], all at once (`run --plan`): inputs cut at
/// `split_bytes` (chosen from the input size and worker count when None), small ones packed
/// together unless `no_pack`, exactly as a job of them is planned while they are listed.
pub fn plan_batch(
    files: &[InputFile],
    options: &crate::JobOptions,
    split_bytes: Option<u64>,
    no_pack: bool,
) -> (Vec<NewTask>, PlanFacts) {
    let split = split_bytes.unwrap_or_else(|| split_for(files, options));
    let mut planner = crate::planner::Planner::new(options.format, split, !no_pack);
    let mut tasks = Vec::new();
    for file in files {
        planner.push(file, &mut tasks);
    }
    let facts = planner.finish(&mut tasks);
    (tasks, facts)
}

/// The split size of a job whose first inputs are `listed` ([`LISTED_BEFORE_PLANNING`] of them
/// at most, or all of them): from their total when they are all, else [`SPLIT_OF_MANY_INPUTS`].
pub fn split_for(listed: &[InputFile], options: &crate::JobOptions) -> u64 {
    if listed.len() > LISTED_BEFORE_PLANNING {
        return SPLIT_OF_MANY_INPUTS;
    }
    let total: u64 = listed.iter().map(|f| f.size).sum();
    let workers = match options.workers {
        0 => crate::available_cpus(),
        n => n,
    };
    default_split_bytes(total, workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_split_gives_each_worker_about_four_tasks_within_bounds() {
        assert_eq!(default_split_bytes(0, 2), 1 << 20);
        assert_eq!(default_split_bytes(800 << 20, 2), 64 << 20);
        assert_eq!(default_split_bytes(64 << 20, 2), 8 << 20);
    }
}
