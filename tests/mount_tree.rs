//! The mounted tree: every accepted spelling of a time resolves, listings
//! name states honestly, info tells the truth, new states appear live.

use diskhist_test_common::{
    export_at, ext4_image, import, incompressible_xorshift64, init_store, mount_line, sha256_hex,
    wait_until, Mounted, MIB,
};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diskhist::Store;

const T1: &str = "2026-11-23T06:30:15.25Z";
const T1_NS: u64 = 1_795_415_415_250_000_000;
const C1: &str = "2026-11-23T06-30-15.250Z";
const T2: &str = "2026-11-23T06:31:00Z";
const C2: &str = "2026-11-23T06-31-00Z";

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn readlink(p: &Path) -> String {
    std::fs::read_link(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .to_str()
        .unwrap()
        .to_string()
}

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

fn errno_of(p: &Path) -> Option<i32> {
    std::fs::metadata(p).err().and_then(|e| e.raw_os_error())
}

/// A store with an ext4 image at T1 and a changed one at T2.
fn two_states(dir: &Path) -> std::path::PathBuf {
    let store = init_store(dir, "64M");
    let img = dir.join("fs.img");
    ext4_image(&img, 64, &[("a.txt", "hello\n"), ("keep.txt", "same\n")]);
    import(&store, &img, T1);
    ext4_image(&img, 64, &[("a.txt", "changed\n"), ("keep.txt", "same\n")]);
    import(&store, &img, T2);
    store
}

#[test]
fn every_spelling_of_a_time_reaches_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = two_states(dir.path());
    let want1 = sha256_hex(&export_at(&store, T1, dir.path()));
    let want2 = sha256_hex(&export_at(&store, T2, dir.path()));
    assert_ne!(want1, want2);
    let s = Store::open(&store).unwrap();
    let head = s.head().seq.0;
    let last_t1 = s.resolve(diskhist::parse_time(T1).unwrap()).unwrap().0;
    drop(s);

    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    assert_eq!(
        list(&m.path("at")),
        vec![C1, C2],
        "one entry per second with writes"
    );
    assert!(std::fs::symlink_metadata(m.path(&format!("at/{C1}")))
        .unwrap()
        .is_dir());

    let canonical_ino = ino(&m.path(&format!("at/{C1}/disk.img")));
    for spelling in [
        T1,
        C1,
        "2026-11-23T15:30:15.25+09:00",
        "2026-11-23T15-30-15.250+09-00",
        "@1795415415.25",
        "2026-11-23T06:30:59.999999999Z", // between the two: still the first state
        &format!("#{last_t1}"),
    ] {
        let img = m.path(&format!("at/{spelling}/disk.img"));
        let data = std::fs::read(&img).unwrap_or_else(|e| panic!("{spelling}: {e}"));
        assert_eq!(sha256_hex(&data), want1, "{spelling}");
        assert_eq!(
            ino(&img),
            canonical_ino,
            "{spelling}: shares the page cache"
        );
        if spelling != C1 {
            assert_eq!(
                readlink(&m.path(&format!("at/{spelling}"))),
                C1,
                "{spelling}"
            );
        }
    }
    assert_eq!(readlink(&m.path("latest")), format!("at/{C2}"));
    assert_eq!(
        sha256_hex(&std::fs::read(m.path("latest/disk.img")).unwrap()),
        want2
    );
    assert_eq!(
        sha256_hex(&std::fs::read(m.path("at/latest/disk.img")).unwrap()),
        want2
    );
    assert_eq!(
        sha256_hex(&std::fs::read(m.path(&format!("seq/{head}/disk.img"))).unwrap()),
        want2
    );

    // Before the first record: the all-zero disk.
    let before = m.path("at/2020-01-01T00:00:00Z");
    assert_eq!(readlink(&before), "../seq/0");
    let zeros = std::fs::read(before.join("disk.img")).unwrap();
    assert_eq!(zeros.len(), 64 * MIB);
    assert!(zeros.iter().all(|&b| b == 0));

    // Names that are not states.
    for bad in [
        "at/yesterday".to_string(),
        "at/2026-11-23".to_string(),
        format!("at/#{}", head + 1),
        format!("seq/{}", head + 1),
        "seq/007".to_string(),
        format!("at/{C1}/nope"),
        "by-day/2026-11-24".to_string(),
    ] {
        assert_eq!(errno_of(&m.path(&bad)), Some(libc::ENOENT), "{bad}");
    }
}

#[test]
fn info_listings_and_mtimes_tell_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let store = two_states(dir.path());
    let s = Store::open(&store).unwrap();
    let head = s.head();
    let r1 = s.resolve(diskhist::parse_time(T1).unwrap()).unwrap();
    let chain1 = s.record(r1).unwrap().chain.to_hex();
    let root1 = s.tree_root(r1).unwrap().to_hex();
    drop(s);

    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let info = std::fs::read_to_string(m.path(&format!("at/{C1}/info"))).unwrap();
    let (state, volumes) = info.split_at(info.find("partition_table:").expect(&info));
    assert_eq!(
        state,
        format!(
            "time: 2026-11-23T06:30:15.250000000Z\nseq: {}\nchain: {chain1}\n\
             tree_size: {}\ntree_root: {root1}\nsize_bytes: 67108864\nblock_size: 4096\n",
            r1.0, r1.0
        )
    );
    // The image is one ext4 filesystem (whether its files are shown
    // depends on the readers built in).
    assert!(
        volumes.starts_with("partition_table: none\nvolume: disk: ext4 "),
        "{info}"
    );
    let info = std::fs::read_to_string(m.path("latest/info")).unwrap();
    assert!(info.contains(&format!("seq: {}\n", head.seq.0)), "{info}");
    assert!(
        info.contains(&format!("chain: {}\n", head.chain.to_hex())),
        "{info}"
    );
    let info0 = std::fs::read_to_string(m.path("seq/0/info")).unwrap();
    assert!(info0.starts_with("time: none"), "{info0}");
    assert!(
        info0.contains(&format!("chain: {}\n", "0".repeat(64))),
        "{info0}"
    );

    // Directory mtimes are the state's time, to the nanosecond.
    let mtime = std::fs::metadata(m.path(&format!("at/{C1}")))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, UNIX_EPOCH + Duration::from_nanos(T1_NS));
    let img = std::fs::metadata(m.path(&format!("at/{C2}/disk.img"))).unwrap();
    assert_eq!(img.len(), 64 << 20);
    assert_eq!(img.mode() & 0o7777, 0o444);

    // by-day: one directory per UTC day, each second the directory of the
    // state at/ shows under the same name, with the same disk.img and info.
    assert_eq!(list(&m.path("by-day")), vec!["2026-11-23"]);
    assert_eq!(list(&m.path("by-day/2026-11-23")), vec![C1, C2]);
    let in_day = m.path(&format!("by-day/2026-11-23/{C1}"));
    assert!(std::fs::symlink_metadata(&in_day).unwrap().is_dir());
    assert_eq!(list(&in_day), list(&m.path(&format!("at/{C1}"))));
    assert_eq!(
        std::fs::read_to_string(in_day.join("info")).unwrap(),
        std::fs::read_to_string(m.path(&format!("at/{C1}/info"))).unwrap()
    );
    assert_eq!(
        ino(&m.path(&format!("by-day/2026-11-23/{C2}/disk.img"))),
        ino(&m.path("latest/disk.img"))
    );

    // The kernel knows it as fuse.diskhist, read-only.
    let line = mount_line(&m.dir).unwrap();
    assert!(line.contains(" - fuse.diskhist "), "{line}");
    assert!(
        line.split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{line}"
    );
    // No default_permissions: the files' owners are the recorded
    // machine's uids (run.rs says why).
    assert!(!line.contains("default_permissions"), "{line}");
}

#[test]
fn listing_names_each_second_by_its_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "1M");
    let img = dir.path().join("raw.img");
    let mut data = vec![0u8; MIB];
    let times = [
        "2026-11-23T06:30:15.1Z",
        "2026-11-23T06:30:15.7Z",
        "2026-11-23T06:30:16.2Z",
        "2026-11-23T06:30:18Z",
    ];
    let mut wants = Vec::new();
    for (i, t) in times.iter().enumerate() {
        data[i * 8192..(i + 1) * 8192]
            .copy_from_slice(&incompressible_xorshift64(8192, i as u64 + 1));
        std::fs::write(&img, &data).unwrap();
        import(&store, &img, t);
        wants.push(data.clone());
    }
    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    assert_eq!(
        list(&m.path("at")),
        vec![
            "2026-11-23T06-30-15.700Z",
            "2026-11-23T06-30-16.200Z",
            "2026-11-23T06-30-18Z"
        ]
    );
    // The listed name of second 15 gives the state at the end of second 15.
    assert_eq!(
        std::fs::read(m.path("at/2026-11-23T06-30-15.700Z/disk.img")).unwrap(),
        wants[1]
    );
    // A state inside a second is still there by its own name, just not listed.
    let mid = m.path("at/2026-11-23T06-30-15.100Z");
    assert!(std::fs::symlink_metadata(&mid).unwrap().is_dir());
    assert_eq!(std::fs::read(mid.join("disk.img")).unwrap(), wants[0]);
    assert_eq!(
        readlink(&m.path("at/2026-11-23T06:30:15.5Z")),
        "2026-11-23T06-30-15.100Z"
    );
    assert_eq!(
        std::fs::read(m.path("at/2026-11-23T06:30:17Z/disk.img")).unwrap(),
        wants[2]
    );
}

#[test]
fn new_states_appear_while_mounted_and_old_ones_never_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "1M");
    let img = dir.path().join("raw.img");
    let first = incompressible_xorshift64(MIB, 7);
    std::fs::write(&img, &first).unwrap();
    import(&store, &img, "2026-11-23T06:30:15Z");
    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let c1 = "2026-11-23T06-30-15Z";
    assert_eq!(list(&m.path("at")), vec![c1]);
    assert_eq!(std::fs::read(m.path("latest/disk.img")).unwrap(), first);
    // A name after the newest record: a state that may still move.
    let future = m.path("at/2026-11-23T06:40:00Z/disk.img");
    assert_eq!(std::fs::read(&future).unwrap(), first);

    let mut second = first.clone();
    second[4096..8192].fill(0xee);
    std::fs::write(&img, &second).unwrap();
    import(&store, &img, "2026-11-23T06:35:00Z");

    let c2 = "2026-11-23T06-35-00Z";
    wait_until(
        Duration::from_secs(5),
        || "the new state in at/".into(),
        || list(&m.path("at")).len() == 2,
    );
    assert_eq!(list(&m.path("at")), vec![c1, c2]);
    wait_until(
        Duration::from_secs(5),
        || "latest to move".into(),
        || std::fs::read_link(m.path("latest")).is_ok_and(|t| t == Path::new(&format!("at/{c2}"))),
    );
    assert_eq!(std::fs::read(m.path("latest/disk.img")).unwrap(), second);
    assert_eq!(
        std::fs::read(m.path(&format!("at/{c1}/disk.img"))).unwrap(),
        first
    );
    wait_until(
        Duration::from_secs(5),
        || "a future name to see the new state".into(),
        || std::fs::read(&future).unwrap() == second,
    );
    // The root's mtime follows the newest state.
    let root_mtime = std::fs::metadata(m.path("at")).unwrap().modified().unwrap();
    assert!(root_mtime > SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_415_415));
}

/// Issue 14: `ls -l` of a busy day took three round trips to the daemon
/// per entry, each redoing searches of the store. A finished day's listing
/// is now kept and answers its links' `stat` and `readlink`; this checks
/// that what it answers is what the store says, that a day still being
/// written is not frozen, and that `ls -l`'s `security.selinux` question
/// is answered "not supported" (so that ls stops asking) while `user.*`
/// names still answer "no such attribute".
#[test]
fn a_finished_days_listing_is_kept_and_tells_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "1M");
    let img = dir.path().join("raw.img");
    let mut data = vec![0u8; MIB];
    let mut step = 0;
    let mut record = |t: &str| {
        data[step * 8192..(step + 1) * 8192]
            .copy_from_slice(&incompressible_xorshift64(8192, step as u64 + 1));
        std::fs::write(&img, &data).unwrap();
        import(&store, &img, t);
        step += 1;
    };
    record("2026-11-23T06:30:15.1Z");
    record("2026-11-23T06:30:15.7Z");
    record("2026-11-23T23:59:59.9Z");
    record("2026-11-24T00:00:01Z");
    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let day = m.path("by-day/2026-11-23");
    let listed = ["2026-11-23T06-30-15.700Z", "2026-11-23T23-59-59.900Z"];
    for _ in 0..2 {
        assert_eq!(list(&day), listed);
        for name in listed {
            let state = day.join(name);
            let st = std::fs::symlink_metadata(&state).unwrap();
            assert!(st.is_dir(), "{name} is a directory");
            assert_eq!(
                st.mtime(),
                std::fs::metadata(m.path(&format!("at/{name}")))
                    .unwrap()
                    .mtime()
            );
            assert_eq!(
                ino(&state.join("disk.img")),
                ino(&m.path(&format!("at/{name}/disk.img")))
            );
            assert_eq!(
                std::fs::read_to_string(state.join("info")).unwrap(),
                std::fs::read_to_string(m.path(&format!("at/{name}/info"))).unwrap()
            );
        }
        // Not the last record of its second: not in the day's listing.
        assert_eq!(
            errno_of(&day.join("2026-11-23T06-30-15.100Z")),
            Some(libc::ENOENT)
        );
    }

    // The day still being written shows what is appended while mounted.
    record("2026-11-24T00:00:02Z");
    wait_until(
        Duration::from_secs(5),
        || "the new second in by-day/2026-11-24".into(),
        || list(&m.path("by-day/2026-11-24")).len() == 2,
    );

    let xattr_errno = |p: &Path, name: &std::ffi::CStr| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let mut buf = [0u8; 64];
        // SAFETY: both names are NUL-terminated; buf is writable for its length.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(n, -1, "{} has {name:?}", p.display());
        std::io::Error::last_os_error().raw_os_error()
    };
    let state = day.join(listed[0]);
    assert_eq!(
        xattr_errno(&state, c"security.selinux"),
        Some(libc::EOPNOTSUPP)
    );
    let image = m.path(&format!("at/{}/disk.img", listed[0]));
    assert_eq!(
        xattr_errno(&image, c"system.posix_acl_access"),
        Some(libc::EOPNOTSUPP)
    );
    assert_eq!(xattr_errno(&image, c"user.none"), Some(libc::ENODATA));
}
