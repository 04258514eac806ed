//! Stores built and read through the command line, as a user would:
//! `init`, `import`, `export`, `log --json`, `verify`, `info`; and a
//! fingerprint of every file of a store, to show nothing changed.

use crate::p;
use crate::process::{diskhist, diskhist_output};
use std::path::{Path, PathBuf};

/// A new store of `size` (e.g. "64M") at `dir/store`.
pub fn init_store(dir: &Path, size: &str) -> PathBuf {
    let store = dir.join("store");
    diskhist(&["init", p(&store), "--size", size]);
    store
}

/// `diskhist import STORE IMAGE --at AT`.
pub fn import(store: &Path, image: &Path, at: &str) {
    diskhist(&["import", p(store), p(image), "--at", at]);
}

/// The disk at `at` (any accepted time spelling), exported with
/// `diskhist export` through a file in `dir`.
pub fn export_at(store: &Path, at: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join(format!(
        "export-{}.img",
        at.replace(['/', ':', '#', '@'], "_")
    ));
    diskhist(&["export", p(store), "--at", at, "-o", p(&out)]);
    let data = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    data
}

/// `diskhist verify STORE` must pass; `when` says at which point of the
/// test, should it not.
pub fn verify_ok(store: &Path, when: &str) {
    let o = diskhist_output(&["verify", p(store)]);
    assert!(
        o.status.success(),
        "verify failed {when}:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The chain head `diskhist info` prints, as hex.
pub fn chain_head(store: &Path) -> String {
    let out = diskhist(&["info", p(store)]);
    out.lines()
        .find_map(|l| l.strip_prefix("chain head:"))
        .unwrap_or_else(|| panic!("no chain head in `diskhist info`:\n{out}"))
        .trim()
        .to_string()
}

/// One record of `diskhist log --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub seq: u64,
    pub time_ns: i64,
    pub kind: String,
    pub offset: u64,
    pub length: u64,
    pub flags: Vec<String>,
}

/// Every record of `diskhist log STORE --json`.
pub fn log_records(store: &Path) -> Vec<LogRecord> {
    diskhist(&["log", p(store), "--json"])
        .lines()
        .map(|l| LogRecord {
            seq: json_field(l, "seq").parse().unwrap(),
            time_ns: json_field(l, "time_ns").parse().unwrap(),
            kind: json_field(l, "kind").trim_matches('"').to_string(),
            offset: json_field(l, "offset").parse().unwrap(),
            length: json_field(l, "length").parse().unwrap(),
            flags: json_field(l, "flags")
                .trim_matches(['[', ']'])
                .split(',')
                .filter(|f| !f.is_empty())
                .map(|f| f.trim_matches('"').to_string())
                .collect(),
        })
        .collect()
}

/// The value of `key` in a flat JSON object on one line: a number, a
/// string (quoted) or an array of strings (bracketed).
fn json_field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    let rest = &line[at + key.len() + 3..];
    let end = if rest.starts_with('[') {
        rest.find(']').unwrap() + 1
    } else {
        rest.find([',', '}']).unwrap()
    };
    &rest[..end]
}

/// Every file and directory under a store, relative path first, with its
/// type, mode, size, mtime and the BLAKE3 hash of its content (files):
/// equal fingerprints mean not one byte of the store changed.
pub fn store_fingerprint(store: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = e.unwrap().path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(store).unwrap().display().to_string();
            let content = if m.is_file() {
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                blake3::hash(&bytes).to_hex().to_string()
            } else {
                if m.is_dir() {
                    stack.push(path.clone());
                }
                "-".to_string()
            };
            out.push(format!(
                "{rel} {:?} mode {:o} {} bytes mtime {:?} blake3 {content}",
                m.file_type(),
                m.permissions().mode(),
                m.len(),
                m.modified().unwrap()
            ));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_of_a_log_line() {
        let l = r#"{"seq":3,"time_ns":17,"offset":98304,"length":4096,"kind":"write","flags":["fua","meta"]}"#;
        assert_eq!(json_field(l, "seq"), "3");
        assert_eq!(json_field(l, "kind"), "\"write\"");
        assert_eq!(json_field(l, "flags"), r#"["fua","meta"]"#);
        assert_eq!(json_field(l, "length"), "4096");
    }
}
