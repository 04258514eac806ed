//! The volumes of one disk: the partitions its table lists (or the whole
//! disk when there is no table), what each holds, and opening the ones
//! diskhist can read.

use super::part::{self, Partition, PartitionTable};
use super::probe::{self, Probe};
use super::source::Source;
use super::{FileSystem, FsKind};

/// Which volume of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VolumeId {
    /// A disk without a partition table, read as one volume.
    WholeDisk,
    /// Partition `p<N>`, as Linux numbers it.
    Partition(u32),
}

/// One volume: where it is, and what it holds.
#[derive(Debug, Clone)]
pub struct Volume {
    pub id: VolumeId,
    pub source: Source,
    /// Its table entry; `None` for the whole disk.
    pub partition: Option<Partition>,
    pub probe: Probe,
}

/// A disk's table and volumes.
#[derive(Debug, Clone)]
pub struct Volumes {
    pub table: PartitionTable,
    /// Partitions in table order (extended containers left out: they hold
    /// logical partitions, not a filesystem), or the whole disk.
    pub volumes: Vec<Volume>,
    /// Partitions listed in the table that cannot be read (running past
    /// the end of the disk), with why.
    pub unreadable: Vec<(Partition, String)>,
}

impl Volumes {
    /// Read `disk`'s table and probe each volume. A disk that cannot be
    /// read at all has no volumes; reading it fails.
    pub fn read(disk: &Source) -> std::io::Result<Volumes> {
        let table = part::read_table(disk)?;
        let mut volumes = Vec::new();
        let mut unreadable = Vec::new();
        if table.partitions.is_empty() {
            volumes.push(Volume {
                id: VolumeId::WholeDisk,
                source: disk.clone(),
                partition: None,
                probe: probe::probe(disk),
            });
        }
        for p in table.partitions.iter().filter(|p| !p.container) {
            match disk.slice(p.start_bytes, p.len_bytes) {
                Some(source) => volumes.push(Volume {
                    id: VolumeId::Partition(p.number),
                    probe: probe::probe(&source),
                    source,
                    partition: Some(p.clone()),
                }),
                None => unreadable.push((p.clone(), "runs past the end of the disk".into())),
            }
        }
        Ok(Volumes {
            table,
            volumes,
            unreadable,
        })
    }

    pub fn get(&self, id: VolumeId) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.id == id)
    }
}

/// Open the filesystem on `volume`, or say why its files cannot be shown.
pub fn open_filesystem(volume: &Volume) -> Result<Box<dyn FileSystem>, String> {
    fn boxed<F: FileSystem + 'static>(
        kind: FsKind,
        opened: Result<F, super::FsError>,
    ) -> Result<Box<dyn FileSystem>, String> {
        opened
            .map(|fs| Box::new(fs) as Box<dyn FileSystem>)
            .map_err(|e| format!("{}: {e}", kind.name()))
    }
    let src = volume.source.clone();
    match volume.probe.kind {
        k @ (FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4) => boxed(k, super::ext4::open(src)),
        k @ FsKind::Ntfs => boxed(k, super::ntfs::open(src)),
        k @ (FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32) => boxed(k, super::fat::open(src)),
        FsKind::Unknown => Err("no filesystem diskhist recognises".into()),
        k => Err(format!("{}: not supported", k.name())),
    }
}

impl Volumes {
    /// The table and the volumes as `info` shows them, one `key: value`
    /// line each (`availability` says, per volume, whether its files can
    /// be shown and why not).
    pub fn describe(&self, availability: impl Fn(&Volume) -> Result<String, String>) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let kind = self.table.kind;
        let _ = writeln!(
            out,
            "partition_table: {}{}",
            kind.name(),
            match kind {
                part::TableKind::Gpt { used_backup: true } =>
                    " (the backup header: the primary is damaged)",
                _ => "",
            }
        );
        for w in &self.table.warnings {
            let _ = writeln!(out, "partition_table_warning: {w}");
        }
        for p in &self.table.partitions {
            let _ = writeln!(
                out,
                "partition: p{} start_bytes={} length_bytes={} type={}{}{}",
                p.number,
                p.start_bytes,
                p.len_bytes,
                p.type_id,
                if p.name.is_empty() {
                    String::new()
                } else {
                    format!(" name={:?}", p.name)
                },
                if p.container {
                    " (extended: holds the logical partitions)"
                } else {
                    ""
                }
            );
        }
        for (p, why) in &self.unreadable {
            let _ = writeln!(out, "volume: p{}: unreadable: {why}", p.number);
        }
        for v in &self.volumes {
            let name = match v.id {
                VolumeId::WholeDisk => "disk".to_string(),
                VolumeId::Partition(n) => format!("p{n}"),
            };
            let probe = &v.probe;
            let mut line = format!("volume: {name}: {}", probe.kind.name());
            if let Some(l) = &probe.label {
                let _ = write!(line, " label={l:?}");
            }
            if let Some(u) = &probe.uuid {
                let _ = write!(line, " uuid={u}");
            }
            match availability(v) {
                Ok(how) => {
                    let _ = write!(line, "; files: available{how}");
                }
                Err(why) => {
                    let _ = write!(line, "; files: not available ({why})");
                }
            }
            let _ = writeln!(out, "{line}");
        }
        out
    }
}
