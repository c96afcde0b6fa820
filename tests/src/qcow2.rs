//! A reader of the qcow2 images of the golden corpus, so that expanding
//! them needs no `qemu-img`.
//!
//! It reads what `tests/golden/README.md` says the corpus holds: qcow2
//! version 2 or 3, clusters stored plainly or compressed with zlib (raw
//! deflate), no encryption, no external data file, no extended L2 entries,
//! and overlays whose backing file is named relative to the overlay (reads
//! past the end of a smaller backing file are zeros). Anything else is an
//! [`io::ErrorKind::InvalidData`] error naming the image, never a panic.
//! All qcow2 fields are big-endian (the format's rule, not PFS's).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// `QFI\xfb`.
const MAGIC: u64 = 0x5146_49fb;
/// Host offset bits of L1 entries and of plain L2 entries (9-55).
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L2 entry: the cluster is compressed.
const COMPRESSED: u64 = 1 << 62;
/// L2 entry (version 3): the cluster reads as zeros.
const ZERO: u64 = 1;
/// Incompatible feature bit 0: refcounts may be stale, which a reader
/// need not mind. Every other bit changes how clusters are found.
const DIRTY: u64 = 1;
/// How deep a chain of backing files may go.
const MAX_CHAIN: usize = 8;

/// An open qcow2 image and its chain of backing files.
pub struct Qcow2 {
    path: PathBuf,
    file: File,
    len: u64,
    size: u64,
    cluster_bits: u32,
    l1: Vec<u64>,
    backing: Option<Box<Qcow2>>,
}

/// A big-endian number from `b`.
fn be(b: &[u8]) -> u64 {
    b.iter().fold(0, |v, &x| v << 8 | u64::from(x))
}

impl Qcow2 {
    /// Opens `path` and its backing files.
    pub fn open(path: &Path) -> io::Result<Qcow2> {
        Qcow2::open_depth(path, 0)
    }

    fn open_depth(path: &Path, depth: usize) -> io::Result<Qcow2> {
        let bad = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {what}", path.display()),
            )
        };
        if depth > MAX_CHAIN {
            return Err(bad(format!("more than {MAX_CHAIN} backing files")));
        }
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut h = [0u8; 112];
        let n = read_up_to(&file, &mut h, 0)?;
        if n < 72 || be(&h[0..4]) != MAGIC {
            return Err(bad("not a qcow2 image".into()));
        }
        let version = be(&h[4..8]);
        let (incompatible, header_len, compression) = match version {
            2 => (0, 72, 0),
            3 if n >= 104 => {
                let header_len = be(&h[100..104]);
                let compression = if header_len > 104 && n > 104 {
                    h[104]
                } else {
                    0
                };
                (be(&h[72..80]), header_len, compression)
            }
            _ => return Err(bad(format!("qcow2 version {version} is not read here"))),
        };
        if incompatible & !DIRTY != 0 {
            return Err(bad(format!(
                "incompatible features {incompatible:#x} (external data, extended L2 or another compression) are not read here"
            )));
        }
        if compression != 0 {
            return Err(bad(format!("compression type {compression} is not zlib")));
        }
        if be(&h[32..36]) != 0 {
            return Err(bad("encrypted images are not read here".into()));
        }
        let cluster_bits = be(&h[20..24]) as u32;
        if !(9..=21).contains(&cluster_bits) || header_len > len {
            return Err(bad(format!("header: cluster bits {cluster_bits}")));
        }
        let size = be(&h[24..32]);
        let l1_size = be(&h[36..40]);
        let l1_offset = be(&h[40..48]);
        // Each L1 entry maps one L2 table of 2^(cluster_bits - 3) clusters.
        let per_l1 = 1u64 << (2 * cluster_bits - 3);
        if l1_size < size.div_ceil(per_l1) || l1_size * 8 > len {
            return Err(bad(format!(
                "L1 table of {l1_size} entries for {size} bytes"
            )));
        }
        let mut raw = vec![0u8; l1_size as usize * 8];
        file.read_exact_at(&mut raw, l1_offset)
            .map_err(|e| bad(format!("L1 table: {e}")))?;
        let l1 = raw.chunks(8).map(be).collect();
        let backing_offset = be(&h[8..16]);
        let backing = if backing_offset == 0 {
            None
        } else {
            let name_len = be(&h[16..20]);
            if name_len == 0 || name_len > 1023 || backing_offset + name_len > len {
                return Err(bad("backing file name out of range".into()));
            }
            let mut name = vec![0u8; name_len as usize];
            file.read_exact_at(&mut name, backing_offset)?;
            let name = PathBuf::from(std::ffi::OsString::from_vec(name));
            let dir = path.parent().unwrap_or(Path::new("."));
            let b = Qcow2::open_depth(&dir.join(name), depth + 1)?;
            if b.cluster_bits != cluster_bits {
                return Err(bad("backing file of another cluster size".into()));
            }
            Some(Box::new(b))
        };
        Ok(Qcow2 {
            path: path.to_owned(),
            file,
            len,
            size,
            cluster_bits,
            l1,
            backing,
        })
    }

    /// The size of the disk the image holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes per cluster.
    pub fn cluster_size(&self) -> usize {
        1 << self.cluster_bits
    }

    fn bad(&self, what: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", self.path.display()),
        )
    }

    /// The L2 entry of guest cluster `index`, 0 when unallocated.
    fn l2_entry(&self, index: u64) -> io::Result<u64> {
        let per_l2 = 1u64 << (self.cluster_bits - 3);
        let l1 = self.l1[(index / per_l2) as usize] & OFFSET_MASK;
        if l1 == 0 {
            return Ok(0);
        }
        let at = l1 + (index % per_l2) * 8;
        if at + 8 > self.len {
            return Err(self.bad(format!("L2 table at {l1:#x} past the end")));
        }
        let mut e = [0u8; 8];
        self.file.read_exact_at(&mut e, at)?;
        Ok(be(&e))
    }

    /// Reads guest cluster `index` into `buf` (one cluster long). Returns
    /// false, leaving `buf` as it was, when the cluster reads as zeros.
    pub fn read_cluster(&self, index: u64, buf: &mut [u8]) -> io::Result<bool> {
        let cs = self.cluster_size() as u64;
        if index * cs >= self.size {
            return Ok(false);
        }
        let entry = self.l2_entry(index)?;
        if entry & COMPRESSED != 0 {
            // Offset in the low 62 - (cluster_bits - 8) bits; above them the
            // number of 512-byte sectors after the one the offset is in.
            let x = 62 - (self.cluster_bits - 8);
            let offset = entry & ((1 << x) - 1);
            let sectors = (entry & ((1 << 62) - 1)) >> x;
            let stored =
                ((sectors + 1) * 512 - (offset % 512)).min(self.len.saturating_sub(offset));
            let mut packed = vec![0u8; stored as usize];
            self.file.read_exact_at(&mut packed, offset)?;
            flate2::read::DeflateDecoder::new(&packed[..])
                .read_exact(buf)
                .map_err(|e| self.bad(format!("cluster {index}: {e}")))?;
            return Ok(true);
        }
        let offset = entry & OFFSET_MASK;
        if offset != 0 {
            if offset + cs > self.len {
                return Err(self.bad(format!("cluster {index} at {offset:#x} past the end")));
            }
            self.file.read_exact_at(buf, offset)?;
            return Ok(true);
        }
        if entry & ZERO != 0 {
            return Ok(false);
        }
        match &self.backing {
            Some(b) => b.read_cluster(index, buf),
            None => Ok(false),
        }
    }

    /// Writes the disk as a sparse raw file at `out`: only clusters holding
    /// a byte other than zero are written.
    pub fn expand(&self, out: &Path) -> io::Result<()> {
        let f = File::create(out)?;
        let cs = self.cluster_size() as u64;
        let mut buf = vec![0u8; cs as usize];
        for index in 0..self.size.div_ceil(cs) {
            buf.fill(0);
            if !self.read_cluster(index, &mut buf)? || buf.iter().all(|&b| b == 0) {
                continue;
            }
            let at = index * cs;
            let n = (self.size - at).min(cs) as usize;
            f.write_all_at(&buf[..n], at)?;
        }
        f.set_len(self.size)?;
        f.sync_all()
    }
}

/// Reads as much of `buf` as the file has at `offset`.
fn read_up_to(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A version 3 header of a 1 MiB disk with 64 KiB clusters and its L1
    /// table right after it; `edit` changes it before it is written.
    fn image(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let mut h = vec![0u8; 4096];
        let put = |h: &mut Vec<u8>, at: usize, v: u64, n: usize| {
            for i in 0..n {
                h[at + i] = (v >> (8 * (n - 1 - i))) as u8;
            }
        };
        put(&mut h, 0, MAGIC, 4);
        put(&mut h, 4, 3, 4);
        put(&mut h, 20, 16, 4);
        put(&mut h, 24, 1 << 20, 8);
        put(&mut h, 36, 1, 4);
        put(&mut h, 40, 512, 8);
        put(&mut h, 100, 112, 4);
        edit(&mut h);
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = dir.join(format!("img-{n}"));
        std::fs::write(&p, &h).unwrap();
        p
    }

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("pfs-qcow2-")
            .tempdir()
            .unwrap()
    }

    #[test]
    fn an_empty_image_expands_to_zeros() {
        let d = scratch();
        let q = Qcow2::open(&image(d.path(), |_| {})).unwrap();
        assert_eq!(q.size(), 1 << 20);
        let out = d.path().join("raw");
        q.expand(&out).unwrap();
        let raw = std::fs::read(&out).unwrap();
        assert_eq!(raw.len(), 1 << 20);
        assert!(raw.iter().all(|&b| b == 0));
    }

    #[test]
    fn what_is_not_read_here_is_an_error_not_a_panic() {
        let d = scratch();
        // What, and the header byte that says it.
        let cases: [(&str, usize, u8); 7] = [
            ("magic", 0, b'X'),
            ("version", 7, 4),
            ("encrypted", 35, 1),
            ("extended L2", 79, 1 << 4),
            ("zstd", 104, 1),
            ("cluster bits", 23, 40),
            ("L1 too small", 39, 0),
        ];
        for (what, at, byte) in cases {
            let e = Qcow2::open(&image(d.path(), |h| h[at] = byte)).err();
            let e = e.unwrap_or_else(|| panic!("{what}: opened"));
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
        }
        // A truncated file.
        let p = d.path().join("short");
        std::fs::write(&p, b"QFI\xfb\0\0\0\x03").unwrap();
        assert!(Qcow2::open(&p).is_err());
    }

    #[test]
    fn an_l2_table_past_the_end_is_an_error() {
        let d = scratch();
        let p = image(d.path(), |h| {
            // L1[0] points far past the end of the file.
            h[512..520].copy_from_slice(&[0, 0, 0, 0, 0x10, 0, 0, 0]);
        });
        let q = Qcow2::open(&p).unwrap();
        let mut buf = vec![0u8; q.cluster_size()];
        assert!(q.read_cluster(0, &mut buf).is_err());
    }
}
