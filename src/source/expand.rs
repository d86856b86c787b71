//! Turning the input arguments (paths, directories, glob patterns, `-`) into an ordered list of
//! inputs, and the order of rotated log files (`flows.log.2.gz`, `flows.log.1`, `flows.log`: oldest
//! first). This module only looks at names and metadata; it reads no data.

use std::cmp::Ordering;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why the inputs could not be opened.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error("no input given (pass a file, a directory, a glob pattern or - for stdin)")]
    NoInputs,
    #[error("{path}: no such file or directory")]
    Missing { path: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("bad glob pattern {pattern:?}: {message}")]
    BadGlob { pattern: String, message: String },
    #[error("glob pattern {pattern:?} matches no file")]
    NoMatch { pattern: String },
    #[error("stdin (-) given more than once")]
    StdinTwice,
}

/// One input after expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InputSpec {
    Stdin,
    File {
        path: PathBuf,
        /// Found inside a directory or by a glob with a rotated name (`x.N`, `x.N.gz`): in follow mode
        /// it is read once, not tailed, since rotation renames it to `x.N+1` and tailing it would read
        /// the live file's content a second time.
        rotated: bool,
    },
}

/// Expands `specs` in order. A path that does not exist is an error, except in follow mode, where it
/// is waited for.
pub(crate) fn expand(specs: &[String], follow: bool) -> Result<Vec<InputSpec>, SourceError> {
    if specs.is_empty() {
        return Err(SourceError::NoInputs);
    }
    let mut out: Vec<InputSpec> = Vec::new();
    let push = |out: &mut Vec<InputSpec>, spec: InputSpec| {
        let dup = match &spec {
            InputSpec::Stdin => false,
            InputSpec::File { path, .. } => out
                .iter()
                .any(|s| matches!(s, InputSpec::File { path: p, .. } if p == path)),
        };
        if !dup {
            out.push(spec);
        }
    };
    let mut stdin_seen = false;
    for spec in specs {
        if spec == "-" {
            if stdin_seen {
                return Err(SourceError::StdinTwice);
            }
            stdin_seen = true;
            push(&mut out, InputSpec::Stdin);
            continue;
        }
        let path = Path::new(spec);
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                for file in directory_files(path)? {
                    let rotated = is_rotated_name(&file);
                    push(
                        &mut out,
                        InputSpec::File {
                            path: file,
                            rotated,
                        },
                    );
                }
            }
            Ok(_) => push(
                &mut out,
                InputSpec::File {
                    path: path.to_path_buf(),
                    rotated: false,
                },
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if has_glob_chars(spec) {
                    for file in glob_files(spec)? {
                        let rotated = is_rotated_name(&file);
                        push(
                            &mut out,
                            InputSpec::File {
                                path: file,
                                rotated,
                            },
                        );
                    }
                } else if follow {
                    push(
                        &mut out,
                        InputSpec::File {
                            path: path.to_path_buf(),
                            rotated: false,
                        },
                    );
                } else {
                    return Err(SourceError::Missing { path: spec.clone() });
                }
            }
            Err(e) => {
                return Err(SourceError::Io {
                    path: spec.clone(),
                    source: e,
                })
            }
        }
    }
    Ok(out)
}

fn has_glob_chars(spec: &str) -> bool {
    spec.contains(['*', '?', '['])
}

/// All regular files under `dir`, recursively, in [`rotation_order`]. Symlinks to files are
/// included; symlinks to directories are not followed (no loops).
fn directory_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let io_err = |e| SourceError::Io {
            path: d.display().to_string(),
            source: e,
        };
        for entry in fs::read_dir(&d).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io_err)?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
                files.push(path);
            }
        }
    }
    files.sort_by(|a, b| rotation_order(a, b));
    Ok(files)
}

/// Files matched by a glob pattern (directories matched are expanded), in [`rotation_order`].
fn glob_files(pattern: &str) -> Result<Vec<PathBuf>, SourceError> {
    let paths = glob::glob(pattern).map_err(|e| SourceError::BadGlob {
        pattern: pattern.to_string(),
        message: e.to_string(),
    })?;
    let mut files = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| SourceError::Io {
            path: e.path().display().to_string(),
            source: io::Error::new(e.error().kind(), e.error().to_string()),
        })?;
        if path.is_dir() {
            files.extend(directory_files(&path)?);
        } else {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(SourceError::NoMatch {
            pattern: pattern.to_string(),
        });
    }
    files.sort_by(|a, b| rotation_order(a, b));
    files.dedup();
    Ok(files)
}

/// Splits a file name into (base, rotation number): `flows.log.2.gz` → (`flows.log`, Some(2)),
/// `flows.log` → (`flows.log`, None).
fn rotation_parts(name: &str) -> (&str, Option<u64>) {
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    if let Some((base, num)) = stem.rsplit_once('.') {
        if !base.is_empty() && !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = num.parse::<u64>() {
                return (base, Some(n));
            }
        }
    }
    (name, None)
}

fn is_rotated_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    rotation_parts(&name).1.is_some()
}

/// Name order, except that the rotations of one log come oldest first: `x.3.gz`, `x.2`, `x.1`, `x`.
pub(crate) fn rotation_order(a: &Path, b: &Path) -> Ordering {
    let name_a = a
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let name_b = b
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let (base_a, rot_a) = rotation_parts(&name_a);
    let (base_b, rot_b) = rotation_parts(&name_b);
    // A larger rotation number is older; the live file (no number) is newest.
    let rank = |r: Option<u64>| match r {
        Some(n) => (0u8, u64::MAX - n),
        None => (1u8, 0),
    };
    a.parent()
        .cmp(&b.parent())
        .then_with(|| base_a.cmp(base_b))
        .then_with(|| rank(rot_a).cmp(&rank(rot_b)))
        .then_with(|| name_a.cmp(&name_b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_files_oldest_first() {
        let mut names: Vec<PathBuf> = [
            "d/flows.log",
            "d/flows.log.1",
            "d/flows.log.10.gz",
            "d/flows.log.2.gz",
            "d/a.txt",
            "d/zeta",
            "d/flows.log.bak",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        names.sort_by(|a, b| rotation_order(a, b));
        let got: Vec<_> = names
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "d/a.txt",
                "d/flows.log.10.gz",
                "d/flows.log.2.gz",
                "d/flows.log.1",
                "d/flows.log",
                "d/flows.log.bak",
                "d/zeta"
            ]
        );
    }

    #[test]
    fn rotation_parts_parses_numbers_only() {
        assert_eq!(rotation_parts("flows.log.3.gz"), ("flows.log", Some(3)));
        assert_eq!(rotation_parts("flows.log.gz"), ("flows.log.gz", None));
        assert_eq!(rotation_parts(".5"), (".5", None));
        assert_eq!(
            rotation_parts("x.99999999999999999999999"),
            ("x.99999999999999999999999", None)
        );
    }

    #[test]
    fn missing_path_is_an_error_naming_it_unless_following() {
        let spec = vec!["/nonexistent/flowwarden/x.log".to_string()];
        let err = expand(&spec, false).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/flowwarden/x.log"),
            "{err}"
        );
        assert_eq!(expand(&spec, true).unwrap().len(), 1);
        assert!(matches!(expand(&[], false), Err(SourceError::NoInputs)));
        let two = vec!["-".to_string(), "-".to_string()];
        assert!(matches!(expand(&two, false), Err(SourceError::StdinTwice)));
    }
}
