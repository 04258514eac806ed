//! Partitions in the mounted tree: each state of a disk with a GPT or MBR
//! table shows `p<N>.img` (exactly that partition's bytes at that moment)
//! and `p<N>/`, and its `info` describes the table and the volumes. The
//! tables are made by sfdisk, as a user would make them.

use diskhist_test_common::{import, incompressible_xorshift64, init_store, sfdisk, Mounted, MIB};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const T1: &str = "2026-11-23T06:30:15Z";
const C1: &str = "2026-11-23T06-30-15Z";
const T2: &str = "2026-11-23T06:31:00Z";
const C2: &str = "2026-11-23T06-31-00Z";
const SECTOR: usize = 512;

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ino(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .ino()
}

/// Fill sectors `start..start + sectors` of `image` with `data`'s start.
fn fill(image: &mut [u8], start: usize, sectors: usize, data: &[u8]) {
    let range = start * SECTOR..(start + sectors) * SECTOR;
    let n = range.len();
    image[range].copy_from_slice(&data[..n]);
}

#[test]
fn gpt_partitions_are_images_of_their_bytes_at_each_moment() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "16M");
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 16 * MIB]).unwrap();
    sfdisk(
        &disk,
        "label: gpt\n\
         start=2048, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\"\n\
         start=8192, size=8192, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=\"data\"\n",
    );
    let mut image = std::fs::read(&disk).unwrap();
    let p1 = incompressible_xorshift64(2 * MIB, 1);
    let p2 = incompressible_xorshift64(4 * MIB, 2);
    fill(&mut image, 2048, 4096, &p1);
    fill(&mut image, 8192, 8192, &p2);
    std::fs::write(&disk, &image).unwrap();
    import(&store, &disk, T1);
    // At T2, p2 changes; p1 does not.
    let p2_later = incompressible_xorshift64(4 * MIB, 3);
    fill(&mut image, 8192, 8192, &p2_later);
    std::fs::write(&disk, &image).unwrap();
    import(&store, &disk, T2);

    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let at1 = m.path(&format!("at/{C1}"));
    let at2 = m.path(&format!("at/{C2}"));
    // files/ appears in p<N>/ once a reader can read the partition; these
    // hold no filesystem.
    assert_eq!(
        list(&at1),
        ["disk.img", "info", "p1", "p1.img", "p2", "p2.img"]
    );
    assert!(list(&at1.join("p1")).is_empty());

    assert_eq!(read(&at1.join("p1.img")), p1);
    assert_eq!(read(&at1.join("p2.img")), p2);
    assert_eq!(read(&at2.join("p1.img")), p1);
    assert_eq!(read(&at2.join("p2.img")), p2_later);
    assert_eq!(
        std::fs::metadata(at2.join("p2.img")).unwrap().len(),
        4 * MIB as u64
    );
    // One state, one file, whichever way it is reached; another state,
    // another file.
    let head = std::fs::read_to_string(at2.join("info")).unwrap();
    let seq = head
        .lines()
        .find_map(|l| l.strip_prefix("seq: "))
        .unwrap()
        .to_string();
    assert_eq!(
        ino(&m.path(&format!("seq/{seq}/p2.img"))),
        ino(&at2.join("p2.img"))
    );
    assert_eq!(ino(&m.path("latest/p2.img")), ino(&at2.join("p2.img")));
    assert_ne!(ino(&at1.join("p2.img")), ino(&at2.join("p2.img")));
    // The same state listed under by-day/ is a directory of its own with
    // the same contents and the same files.
    let in_day = m.path(&format!("by-day/{}/{C2}", &C2[..10]));
    assert!(std::fs::symlink_metadata(&in_day).unwrap().is_dir());
    assert_eq!(list(&in_day), list(&at2));
    assert!(list(&in_day.join("p1")).is_empty());
    assert_eq!(ino(&in_day.join("p2.img")), ino(&at2.join("p2.img")));
    assert_eq!(read(&in_day.join("p2.img")), p2_later);

    for line in [
        "partition_table: gpt\n",
        "partition: p1 start_bytes=1048576 length_bytes=2097152 \
         type=0fc63daf-8483-4772-8e79-3d69d8477de4 name=\"root\"\n",
        "partition: p2 start_bytes=4194304 length_bytes=4194304 \
         type=ebd0a0a2-b9e5-4433-87c0-68b6b72699c7 name=\"data\"\n",
        "\nvolume: p1: unknown; files: not available (",
        "\nvolume: p2: unknown; files: not available (",
    ] {
        assert!(head.contains(line), "{line:?} missing in:\n{head}");
    }
}

#[test]
fn an_mbr_extended_partition_shows_its_whole_range_and_its_logicals() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "16M");
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 16 * MIB]).unwrap();
    sfdisk(
        &disk,
        "label: dos\n\
         start=2048, size=4096, type=83\n\
         start=8192, size=16384, type=5\n\
         start=10240, size=4096, type=83\n",
    );
    let mut image = std::fs::read(&disk).unwrap();
    let logical = incompressible_xorshift64(2 * MIB, 5);
    fill(&mut image, 10240, 4096, &logical);
    std::fs::write(&disk, &image).unwrap();
    import(&store, &disk, T1);

    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let at = m.path(&format!("at/{C1}"));
    assert_eq!(
        list(&at),
        ["disk.img", "info", "p1", "p1.img", "p2", "p2.img", "p5", "p5.img"]
    );
    assert_eq!(read(&at.join("p5.img")), logical);
    // The extended partition: its whole range, EBR and logicals included.
    let ext = read(&at.join("p2.img"));
    assert_eq!(ext.len(), 16384 * SECTOR);
    assert_eq!(ext[..], image[8192 * SECTOR..(8192 + 16384) * SECTOR]);
    assert!(list(&at.join("p2")).is_empty());

    let info = std::fs::read_to_string(at.join("info")).unwrap();
    for line in [
        "partition_table: mbr\n",
        "partition: p2 start_bytes=4194304 length_bytes=8388608 type=0x05 \
         (extended: holds the logical partitions)\n",
        "partition: p5 start_bytes=5242880 length_bytes=2097152 type=0x83\n",
        "\nvolume: p5: ",
    ] {
        assert!(info.contains(line), "{line:?} missing in:\n{info}");
    }
}
