//! Write-behind, a policy of an open [`File`] ([`OpenOptions::write_behind`],
//! what a FUSE mount chooses): writes go to the device at once, and their
//! extents and the new size are committed in one transaction at
//! [`File::commit`], [`File::sync_all`], [`File::finish`] or close, before
//! the handle reads or looks at the file, and after every [`COMMIT_EVERY`]
//! bytes. A file being written gets its blocks ahead of the writer (as
//! much again as it has before the write, up to [`ALLOC_AHEAD`], in one
//! transaction), so a sequential writer costs one allocating transaction
//! per up to 64 MiB instead of one per block; what is left past the end
//! when it finishes is given back.
//!
//! [`OpenOptions::write_behind`]: super::OpenOptions::write_behind

use super::File;
use crate::error::{CoreError, Result};
use crate::fsops::{check_range, FallocMode};
use pfs_format::layout::BLOCK_SIZE;

/// Uncommitted bytes after which a write commits its extents anyway, so a
/// transaction stays far below the smallest journal.
pub(crate) const COMMIT_EVERY: u64 = 256 << 20;

/// The most a write allocates ahead of the file's end.
pub(crate) const ALLOC_AHEAD: u64 = 64 << 20;

/// What a write-behind handle keeps between its writes.
#[derive(Debug, Default)]
pub(super) struct Behind {
    /// Bytes written since the last commit.
    dirty: u64,
    /// End of the last range allocated ahead; a write ending below it
    /// leaves any allocation it needs (a hole) to the write itself.
    alloc_end: u64,
    /// Writes allocated blocks past the written end, to be given back
    /// when the file finishes.
    ahead: bool,
}

impl File {
    /// A write of a write-behind handle: the blocks made sure of (ahead of
    /// a growing file), the data written, its extents left to commit.
    pub(super) fn write_behind(&self, buf: &[u8], off: u64) -> Result<usize> {
        let end = check_range("write", off, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(0);
        }
        self.reserve(off, end)?;
        let n = self.write_blocks(buf, off)?;
        let due = {
            let mut b = self.behind.lock();
            b.dirty += n as u64;
            b.dirty >= COMMIT_EVERY
        };
        if due {
            self.commit()?;
        }
        Ok(n)
    }

    /// Notes that what was written is committed.
    pub(super) fn behind_committed(&self) {
        self.behind.lock().dirty = 0;
    }

    /// Makes sure the blocks of `[off, end)` exist, allocating ahead of a
    /// file that is being written: as much again as the file already has
    /// before `off`, up to [`ALLOC_AHEAD`]; only what is written when the
    /// filesystem has too little room for more.
    fn reserve(&self, off: u64, end: u64) -> Result<()> {
        if end <= self.behind.lock().alloc_end {
            return Ok(());
        }
        let start = off - off % BLOCK_SIZE;
        let mut extra = start.min(ALLOC_AHEAD);
        let blocks = self.m.blocks(self.ino)?;
        let mode = FallocMode {
            keep_size: true,
            no_hide_stale: false,
        };
        let stop = loop {
            let stop = end.next_multiple_of(BLOCK_SIZE).saturating_add(extra);
            if (start / BLOCK_SIZE..stop / BLOCK_SIZE).all(|b| blocks.contains_key(&b)) {
                break stop;
            }
            match self.m.fallocate(self.ino, start, stop - start, mode) {
                Ok(()) => break stop,
                Err(CoreError::NoSpace { .. }) if extra > 0 => extra = 0,
                Err(e) => return Err(e),
            }
        };
        let mut b = self.behind.lock();
        b.alloc_end = b.alloc_end.max(stop);
        b.ahead |= extra > 0;
        Ok(())
    }

    /// Forgets blocks allocated ahead past `len`, which a truncate to
    /// `len` frees.
    pub(super) fn behind_cut(&self, len: u64) {
        let mut b = self.behind.lock();
        b.alloc_end = b.alloc_end.min(len - len % BLOCK_SIZE);
    }

    /// Gives back blocks allocated ahead past the end of the file (a
    /// truncate to the size it has, which keeps its times: one set while
    /// it was open stays).
    pub(super) fn give_back_ahead(&self) -> Result<()> {
        let alloc_end = {
            let mut b = self.behind.lock();
            if !b.ahead {
                return Ok(());
            }
            b.ahead = false;
            std::mem::take(&mut b.alloc_end)
        };
        let size = self.m.getattr(self.ino)?.size;
        if alloc_end > size.next_multiple_of(BLOCK_SIZE) {
            self.m.truncate(self.ino, size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{behind, mem_writer as writer};
    use crate::OpenOptions;
    use pfs_format::layout::BLOCK_SIZE;

    #[test]
    fn writes_behind_are_committed_late_with_blocks_ahead_given_back() {
        let m = writer();
        let f = m.open_file("/f", behind()).unwrap();
        let other = m.open_file("/f", OpenOptions::default()).unwrap();
        let block = vec![5u8; BLOCK_SIZE as usize];
        for i in 0..4 {
            assert_eq!(f.write_at(&block, i * BLOCK_SIZE).unwrap(), block.len());
        }
        // Not committed: another handle sees the file as it was, with the
        // blocks allocated ahead (the fourth write took as much again as
        // the file had before it: 3 more).
        let a = other.getattr().unwrap();
        assert_eq!(a.size, 0);
        assert_eq!(a.nblock, 7, "4 written, 3 ahead");
        // The writing handle looks at its own writes.
        assert_eq!(f.getattr().unwrap().size, 4 * BLOCK_SIZE);
        assert_eq!(other.getattr().unwrap().size, 4 * BLOCK_SIZE);
        f.write_at(b"tail", 4 * BLOCK_SIZE).unwrap();
        let mut back = [0u8; 4];
        assert_eq!(f.read_at(&mut back, 4 * BLOCK_SIZE).unwrap(), 4);
        assert_eq!(&back, b"tail");
        // Finishing gives back what is past the end; the handle stays.
        f.finish().unwrap();
        let a = other.getattr().unwrap();
        assert_eq!((a.size, a.nblock), (4 * BLOCK_SIZE + 4, 5));
        f.write_at(b"more", 4 * BLOCK_SIZE + 4).unwrap();
        f.close().unwrap();
        assert_eq!(other.getattr().unwrap().size, 4 * BLOCK_SIZE + 8);
    }

    #[test]
    fn a_cut_file_is_not_taken_as_allocated_ahead() {
        let m = writer();
        let f = m.open_file("/f", behind()).unwrap();
        let block = vec![1u8; BLOCK_SIZE as usize];
        f.write_at(&block, 0).unwrap();
        f.write_at(&block, BLOCK_SIZE).unwrap();
        f.set_len(0).unwrap();
        f.write_at(b"again", BLOCK_SIZE).unwrap();
        f.close().unwrap();
        let a = m.stat_path("/f").unwrap();
        assert_eq!(
            (a.size, a.nblock),
            (BLOCK_SIZE + 5, 1),
            "a hole, then one block"
        );
        let mut back = [9u8; 5];
        let r = m.open_file("/f", OpenOptions::default()).unwrap();
        r.read_at(&mut back, 0).unwrap();
        assert_eq!(back, [0; 5]);
    }
}
