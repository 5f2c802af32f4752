//! Turning the INPUT arguments (files, directories, glob patterns, object URLs) into the list of
//! inputs a job plans.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::object::{self, SCHEME};
use crate::{InputError, InputFile};

/// Every input the arguments name, in the order given, each once, with its size (and an object's
/// version): local paths as [`expand`] finds them, `s3://BUCKET/KEY` as that object and
/// `s3://BUCKET/PREFIX` as every object under it ([`object::list`]). Anything that names nothing
/// is an error, before any work starts.
pub fn inputs(arguments: &[String]) -> Result<Vec<InputFile>, InputError> {
    let mut out = Vec::new();
    for_each_input(arguments, &mut |file| {
        out.push(file);
        Ok::<(), InputError>(())
    })?;
    Ok(out)
}

/// Checks that every argument names something (a path that exists, a pattern that matches, an
/// object URL with an object under it: its first listing page only), without listing what is
/// below a directory or a prefix: what [`for_each_input`] finds later then only fails alone.
pub fn check_arguments(arguments: &[String]) -> Result<(), InputError> {
    for argument in arguments {
        if argument.starts_with(SCHEME) {
            object::check(argument)?;
            continue;
        }
        let path = Path::new(argument);
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(err) if is_pattern(argument) && err.kind() == std::io::ErrorKind::NotFound => {
                let mut matches = glob::glob(argument).map_err(|e| InputError::BadPattern {
                    pattern: argument.clone(),
                    reason: e.to_string(),
                })?;
                if !matches.any(|m| m.is_ok_and(|m| m.is_file())) {
                    return Err(InputError::NoMatch {
                        pattern: argument.clone(),
                    });
                }
            }
            Err(err) => return Err(InputError::from_io(path, err)),
        }
    }
    Ok(())
}

/// Hands every input the arguments name to `f` as the listing finds it (see [`inputs`]): a
/// directory of millions of files is planned while it is walked, never held whole. Returns how
/// many inputs there were.
pub fn for_each_input<E: From<InputError>>(
    arguments: &[String],
    f: &mut dyn FnMut(InputFile) -> Result<(), E>,
) -> Result<u64, E> {
    // One record across arguments: `run DIR DIR/a.txt` names a.txt twice.
    let mut seen = Seen::default();
    let mut count = 0;
    for (i, argument) in arguments.iter().enumerate() {
        if argument.starts_with(SCHEME) {
            // An object an earlier argument listed (a prefix of it given twice, or overlapping):
            // told by the arguments alone, so millions of objects take no memory to dedup.
            let earlier: Vec<&str> = arguments[..i]
                .iter()
                .filter(|a| a.starts_with(SCHEME))
                .map(String::as_str)
                .collect();
            object::for_each(argument, &mut |o| {
                let url = o.url.to_string_lossy();
                if earlier.iter().any(|e| object::lists(e, &url)) {
                    seen.duplicates += 1;
                    return Ok(());
                }
                count += 1;
                f(InputFile {
                    path: o.url,
                    size: o.size,
                    version: o.version,
                })
            })?;
            continue;
        }
        // The one `stat` the listing made of each file gives its size and version. A file that
        // could not be stat'ed still becomes a task: its worker reports why it cannot be read (it
        // vanished, or is unreadable).
        listed(
            std::slice::from_ref(argument),
            &mut seen,
            &mut |path, meta| {
                count += 1;
                f(InputFile {
                    size: meta.as_ref().map_or(0, |m| m.len()),
                    version: meta
                        .as_ref()
                        .filter(|m| m.is_file())
                        .map(crate::read::local_version),
                    path,
                })
            },
        )?;
    }
    seen.note_duplicates();
    Ok(count)
}

/// Inputs already listed: a file is counted once however many times it is named or linked to
/// (the same device and inode). A file is known by its device and inode alone (a path names one
/// file, so this also catches a path given twice, and hashing 16 bytes is far cheaper than
/// hashing a path, which std does component by component: that was the largest cost of listing
/// 500,000 files), kept in a compressed bitmap per device: inodes made together are near each
/// other, so millions of files take a few bits each, not a hash-set entry; what is not a file
/// that could be stat'ed (a FIFO, a dangling link) by its path.
#[derive(Default)]
struct Seen {
    files: std::collections::HashMap<u64, roaring::RoaringTreemap>,
    others: HashSet<PathBuf>,
    /// Paths skipped because they named a file already listed.
    duplicates: u64,
}

impl Seen {
    /// True the first time the input at `path` (with its metadata) is seen.
    fn first(&mut self, path: &Path, meta: Option<&std::fs::Metadata>) -> bool {
        use std::os::unix::fs::MetadataExt;
        let new = match meta.filter(|m| m.is_file()) {
            Some(m) => self.files.entry(m.dev()).or_default().insert(m.ino()),
            None => self.others.insert(path.to_path_buf()),
        };
        // (A path given twice is counted here too: both are a file named again.)
        if !new && meta.is_some_and(|m| m.is_file()) {
            self.duplicates += 1;
        }
        new
    }

    /// Says (once, at info level) how many inputs named a file already listed.
    fn note_duplicates(&self) {
        if self.duplicates > 0 {
            tracing::info!(
                "{} input(s) named a file already listed (the same file by another name or link): \
                 each file is counted once",
                self.duplicates
            );
        }
    }
}

/// Files named by `inputs`: a file as is, a directory recursively (everything in it that is not a
/// directory, in path order: what cannot be read fails alone, by name, when a worker reads it;
/// symbolic links followed, a link back to a directory it is in skipped), a glob pattern by its
/// matches. Each file once, however many times it is named or linked to (the same device and
/// inode): counted twice, its words would be too. Paths are made absolute so that workers anywhere
/// can open them. Anything that names nothing is an error, before any work starts.
pub fn expand(inputs: &[String]) -> Result<Vec<PathBuf>, InputError> {
    let mut seen = Seen::default();
    let mut files = Vec::new();
    listed(inputs, &mut seen, &mut |path, _| {
        files.push(path);
        Ok::<(), InputError>(())
    })?;
    seen.note_duplicates();
    Ok(files)
}

/// [`expand`] of the inputs not in `seen` (which records them), each handed to `found` with its
/// metadata from the one `stat` the listing made of it (None when it could not be stat'ed): a
/// second and third `stat` per file were most of listing 500,000 small files.
fn listed<E: From<InputError>>(
    inputs: &[String],
    seen: &mut Seen,
    found: &mut dyn FnMut(PathBuf, Option<std::fs::Metadata>) -> Result<(), E>,
) -> Result<(), E> {
    let mut push = |p: PathBuf| -> Result<(), E> {
        let meta = std::fs::metadata(&p).ok();
        if seen.first(&p, meta.as_ref()) {
            found(p, meta)?;
        }
        Ok(())
    };
    for input in inputs {
        let path = Path::new(input);
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                for entry in walkdir::WalkDir::new(path)
                    .follow_links(true)
                    .sort_by_file_name()
                {
                    match entry {
                        // Anything below the directory that is not a directory (a file, a FIFO, a
                        // socket) is an input; one that cannot be read is reported by name when a
                        // worker tries it, and the rest of the job goes on.
                        Ok(entry) if !entry.file_type().is_dir() => push(absolute(entry.path())?)?,
                        Ok(_) => {}
                        // A link back to a directory it is in: everything under it is listed
                        // already.
                        Err(e) if e.loop_ancestor().is_some() => {
                            tracing::info!(
                                "{}: a link back to {}; skipped",
                                e.path().unwrap_or(path).display(),
                                e.loop_ancestor().unwrap_or(path).display()
                            );
                        }
                        // A dangling symlink, an entry that vanished, a directory that cannot be
                        // listed: the same, unless it is the directory given itself.
                        Err(e) if e.depth() > 0 && e.path().is_some() => {
                            if let Some(at) = e.path() {
                                push(absolute(at)?)?;
                            }
                        }
                        Err(e) => {
                            let at = e.path().unwrap_or(path).to_path_buf();
                            let source = e
                                .into_io_error()
                                .unwrap_or_else(|| std::io::Error::other("filesystem loop"));
                            return Err(InputError::from_io(&at, source).into());
                        }
                    }
                }
            }
            Ok(_) => push(absolute(path)?)?,
            Err(err) if is_pattern(input) && err.kind() == std::io::ErrorKind::NotFound => {
                let matches = glob::glob(input).map_err(|e| InputError::BadPattern {
                    pattern: input.clone(),
                    reason: e.to_string(),
                })?;
                let mut found_any = false;
                for m in matches {
                    let m = m.map_err(|e| {
                        let at = e.path().to_path_buf();
                        InputError::from_io(&at, e.into())
                    })?;
                    if m.is_file() {
                        found_any = true;
                        push(absolute(&m)?)?;
                    }
                }
                if !found_any {
                    return Err(InputError::NoMatch {
                        pattern: input.clone(),
                    }
                    .into());
                }
            }
            Err(err) => return Err(InputError::from_io(path, err).into()),
        }
    }
    Ok(())
}

fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn absolute(path: &Path) -> Result<PathBuf, InputError> {
    std::path::absolute(path).map_err(|e| InputError::from_io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_globs_and_files_expand_once_each() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("sub/deeper")).expect("mkdir");
        for f in ["a.txt", "b.csv", "sub/c.txt", "sub/deeper/d.txt"] {
            std::fs::write(d.join(f), "x").expect("write");
        }
        let inputs = vec![
            d.join("sub").display().to_string(),
            d.join("*.txt").display().to_string(),
            d.join("a.txt").display().to_string(),
        ];
        let got = expand(&inputs).expect("expands");
        let names: Vec<_> = got
            .iter()
            .map(|p| p.strip_prefix(d).expect("inside").to_path_buf())
            .collect();
        assert_eq!(
            names,
            vec![
                PathBuf::from("sub/c.txt"),
                PathBuf::from("sub/deeper/d.txt"),
                PathBuf::from("a.txt")
            ]
        );
    }

    #[test]
    fn a_missing_path_or_empty_pattern_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope.txt").display().to_string();
        let err = expand(std::slice::from_ref(&missing)).expect_err("missing");
        assert!(err.to_string().contains("nope.txt: no such file"), "{err}");
        let pattern = dir.path().join("*.nothing").display().to_string();
        let err = expand(&[pattern]).expect_err("no match");
        assert!(err.to_string().contains("matched no files"), "{err}");
    }
}
