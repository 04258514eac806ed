//! Worker threads that own opened filesystems. The readers behind ext4 and
//! FAT are not `Send` (they keep `Rc`/`RefCell` state), so an opened
//! filesystem lives on one thread: each volume is pinned to a worker by
//! its key, and every request for it runs there. Each worker keeps its
//! opened filesystems in a small LRU, so memory stays bounded however
//! many states are browsed, and parsing a filesystem is paid once per
//! volume while it is in use.
//!
//! A reader that panics on a hostile image (the `ntfs` crate does, now and
//! then) costs that request an error and the volume its cached state; the
//! worker goes on.

use super::{FileSystem, FsError};
use lru::LruCache;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::mpsc;

/// Filesystems each worker keeps open.
pub const OPEN_PER_WORKER: usize = 8;

type Job<K> = Box<dyn FnOnce(&mut Shelf<K>) + Send>;

/// A worker's opened filesystems, by volume key. `Err` remembers why a
/// volume cannot be read, so that it is not probed again on every request.
pub struct Shelf<K: Hash + Eq> {
    open: LruCache<K, Result<Box<dyn FileSystem>, String>>,
}

impl<K: Hash + Eq + Clone> Shelf<K> {
    /// The filesystem of volume `key`, opened with `open` if it is not
    /// open yet.
    pub fn get(
        &mut self,
        key: &K,
        open: impl FnOnce() -> Result<Box<dyn FileSystem>, String>,
    ) -> Result<&mut dyn FileSystem, FsError> {
        if !self.open.contains(key) {
            self.open.put(key.clone(), open());
        }
        match self.open.get_mut(key).expect("just put") {
            Ok(fs) => Ok(fs.as_mut()),
            Err(why) => Err(FsError::Unsupported(why.clone())),
        }
    }

    /// Forget volume `key` (after its reader panicked).
    fn forget(&mut self, key: &K) {
        self.open.pop(key);
    }
}

/// The workers.
pub struct Pool<K: Hash + Eq + Clone + Send + 'static> {
    workers: Vec<mpsc::Sender<(K, Job<K>)>>,
}

impl<K: Hash + Eq + Clone + Send + 'static> Pool<K> {
    pub fn new(threads: usize) -> Pool<K> {
        let workers = (0..threads.max(1))
            .map(|i| {
                let (tx, rx) = mpsc::channel::<(K, Job<K>)>();
                std::thread::Builder::new()
                    .name(format!("diskhist-fs-{i}"))
                    .spawn(move || work(rx))
                    .expect("spawning a filesystem worker");
                tx
            })
            .collect();
        Pool { workers }
    }

    /// Run `f` on the worker that owns volume `key`, and wait for its
    /// answer. A panic inside `f` is an error, and the volume is opened
    /// afresh next time.
    pub fn run<R: Send + 'static>(
        &self,
        key: K,
        f: impl FnOnce(&mut Shelf<K>) -> Result<R, FsError> + Send + 'static,
    ) -> Result<R, FsError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let worker = &self.workers[(h.finish() % self.workers.len() as u64) as usize];
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job<K> = Box::new(move |shelf| {
            let _ = tx.send(f(shelf));
        });
        worker
            .send((key, job))
            .map_err(|_| FsError::Damaged("the filesystem worker is gone".into()))?;
        rx.recv().unwrap_or_else(|_| {
            Err(FsError::Damaged(
                "the filesystem reader failed on this volume (it panicked); it is opened \
                 afresh on the next request"
                    .into(),
            ))
        })
    }
}

fn work<K: Hash + Eq + Clone>(rx: mpsc::Receiver<(K, Job<K>)>) {
    let mut shelf = Shelf {
        open: LruCache::new(NonZeroUsize::new(OPEN_PER_WORKER).expect("non-zero")),
    };
    for (key, job) in rx {
        let run = std::panic::AssertUnwindSafe(|| job(&mut shelf));
        if std::panic::catch_unwind(run).is_err() {
            log::warn!("a filesystem reader panicked; the volume will be opened afresh");
            shelf.forget(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_job_costs_an_error_not_the_worker() {
        let pool: Pool<u32> = Pool::new(2);
        let err = pool.run(7, |_| -> Result<(), FsError> { panic!("hostile image") });
        assert!(matches!(err, Err(FsError::Damaged(_))), "{err:?}");
        assert_eq!(pool.run(7, |_| Ok(41 + 1)).unwrap(), 42);
    }
}
