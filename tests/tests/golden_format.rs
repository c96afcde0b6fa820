//! Decodes every chunk header, every meta object, the leader record and the
//! committed journal of every golden image the reference made, and checks the
//! counts against what the reference's `dumpfs` printed for that image.

#![allow(clippy::unwrap_used)]

use pfs_format::direntry::assemble_name;
use pfs_format::layout::{BLOCK_SIZE, CHUNK_SIZE, JOURNAL_FILE_INO, LOG_ENTRY_SIZE, SECTOR_SIZE};
use pfs_format::metaset::decode_sector;
use pfs_format::{ChunkPhy, LeaderRecord, LogEntryPhy, MetaObjPhy, MetaType, ObjectId};
use pfs_tests::{dumpfs_counts, expand, output, RawImage};
use std::collections::BTreeMap;

/// Every metaset of an image, decoded and validated.
struct Meta {
    nchunk: u32,
    objs: BTreeMap<ObjectId, MetaObjPhy>,
}

impl Meta {
    fn load(img: &RawImage) -> Meta {
        let ck0 = ChunkPhy::decode(&img.read(0, 4096), 0).expect("chunk 0 header");
        let nchunk = ck0.ck_nchunk.get();
        assert_eq!(
            u64::from(nchunk),
            img.len() / CHUNK_SIZE,
            "ck_nchunk vs device size"
        );
        let mut objs = BTreeMap::new();
        for chunk in 0..nchunk {
            let base = u64::from(chunk) * CHUNK_SIZE;
            let ck = ChunkPhy::decode(&img.read(base, 4096), u64::from(chunk))
                .unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
            assert_ne!(ck.ck_checksum.get(), 0, "reference images carry checksums");
            assert_eq!(ChunkPhy::from_bytes(&ck.to_bytes()).unwrap(), ck);
            for t in MetaType::ALL {
                let ms = ck.metaset(t);
                let bytes = img.read(
                    ms.ms_sectbda.get(),
                    (ms.ms_nsect.get() as u64 * SECTOR_SIZE) as usize,
                );
                for sect in 0..t.nsect() {
                    let raw = &bytes[(sect as usize * 4096)..][..4096];
                    let objs_in = decode_sector(raw, t, chunk, sect)
                        .unwrap_or_else(|e| panic!("{t} sector {sect} of chunk {chunk}: {e}"));
                    for (i, mo) in objs_in.iter().enumerate() {
                        assert_ne!(mo.mo_checksum.get(), 0);
                        assert_eq!(
                            &mo.to_bytes()[..],
                            &raw[i * 128..][..128],
                            "encode(decode(x)) == x"
                        );
                        let id = ObjectId::new(t, chunk, sect * 32 + i as u32).unwrap();
                        objs.insert(id, *mo);
                    }
                }
            }
        }
        let meta = Meta { nchunk, objs };
        meta.check_links();
        meta
    }

    fn check_links(&self) {
        for (id, mo) in &self.objs {
            mo.validate_links(self.nchunk)
                .unwrap_or_else(|e| panic!("{}: {e}", id.number()));
        }
    }

    /// (free, used, total) per type, as dumpfs counts them.
    fn counts(&self) -> [(u64, u64, u64); 3] {
        let mut out = [(0, 0, 0); 3];
        for (id, mo) in &self.objs {
            let c = &mut out[usize::from(id.mtype.raw()) - 1];
            if mo.is_used() {
                c.1 += 1;
            } else {
                c.0 += 1;
            }
            c.2 += 1;
        }
        out
    }

    fn get(&self, t: MetaType, number: u64) -> MetaObjPhy {
        let id = ObjectId::from_number(t, number, self.nchunk).expect("valid number");
        self.objs[&id]
    }

    /// Device addresses of the journal's blocks, in file order.
    fn journal_blocks(&self) -> Vec<u64> {
        let mut blocks: Vec<(i64, u64)> = self
            .objs
            .iter()
            .filter(|(id, mo)| {
                id.mtype == MetaType::BlkTag
                    && id.oid != 0
                    && mo.is_used()
                    && mo.blktag().bt_ino.get() == JOURNAL_FILE_INO as i64
            })
            .map(|(id, mo)| {
                (
                    mo.blktag().bt_blkid.get(),
                    id.block_number().unwrap() * BLOCK_SIZE,
                )
            })
            .collect();
        blocks.sort();
        for (i, (blkid, _)) in blocks.iter().enumerate() {
            assert_eq!(
                *blkid, i as i64,
                "journal blocks are contiguous in the file"
            );
        }
        blocks.into_iter().map(|(_, bda)| bda).collect()
    }

    /// Names of every used head direntry, reassembled from extension chains.
    fn names(&self) -> Vec<Vec<u8>> {
        let mut names = Vec::new();
        for (id, mo) in &self.objs {
            if id.mtype != MetaType::DirEntry
                || !mo.is_used()
                || id.number() == 0
                || mo.direntry().is_ext()
            {
                continue;
            }
            let name = assemble_name(id.number(), mo.direntry(), |n| {
                Ok(*self.get(MetaType::DirEntry, n).direntry())
            })
            .unwrap_or_else(|e| panic!("name of direntry {}: {e}", id.number()));
            names.push(name);
        }
        names
    }
}

/// The leader record at device offset 4 MiB.
fn leader(img: &RawImage) -> LeaderRecord {
    let lr = LeaderRecord::decode(&img.read(BLOCK_SIZE, 4096)).expect("leader record");
    assert_eq!(LeaderRecord::from_bytes(&lr.to_bytes()).unwrap(), lr);
    lr
}

/// Decodes the committed journal entries `(tail, head]`.
fn journal(img: &RawImage, meta: &Meta, lr: &LeaderRecord) -> Vec<(LogEntryPhy, ObjectId)> {
    let blocks = meta.journal_blocks();
    assert_eq!(blocks.len() as u64 * BLOCK_SIZE, lr.log_size.get());
    let mut out = Vec::new();
    let mut off = lr.tail_offset.get();
    while off != lr.head_offset.get() {
        let bda = blocks[(off / BLOCK_SIZE) as usize] + off % BLOCK_SIZE;
        let bytes = img.read(bda, LOG_ENTRY_SIZE);
        let (le, id) = LogEntryPhy::decode(&bytes, meta.nchunk)
            .unwrap_or_else(|e| panic!("log entry at {off}: {e}"));
        assert_eq!(&le.to_bytes()[..], &bytes[..]);
        out.push((le, id));
        off = (off + LOG_ENTRY_SIZE as u64) % lr.log_size.get();
    }
    out
}

fn check_image(
    case: &str,
    image: &str,
    dumpfs: &str,
) -> (Meta, LeaderRecord, Vec<(LogEntryPhy, ObjectId)>) {
    let img = RawImage::open(&expand(case, image)).unwrap();
    let meta = Meta::load(&img);
    assert_eq!(
        meta.counts(),
        dumpfs_counts(&output(case, dumpfs)),
        "{case}/{image} counts vs dumpfs"
    );
    let lr = leader(&img);
    let entries = journal(&img, &meta, &lr);
    // Entries carry consecutive lsns ending at head_lsn, txids ending at
    // head_txid, and le_more closes each transaction.
    if let Some((last, _)) = entries.last() {
        assert_eq!(last.le_lsn.get() as u64, lr.head_lsn.get());
        assert_eq!(last.le_txid.get() as u64, lr.head_txid.get());
        assert_eq!(last.le_more.get(), 0);
    }
    for w in entries.windows(2) {
        assert_eq!(w[1].0.le_lsn.get(), w[0].0.le_lsn.get() + 1);
        let same_tx = w[1].0.le_txid.get() == w[0].0.le_txid.get();
        assert_eq!(
            same_tx,
            w[0].0.le_more.get() == 1,
            "le_more chains a transaction"
        );
        if !same_tx {
            assert_eq!(w[1].0.le_txid.get(), w[0].0.le_txid.get() + 1);
        }
    }
    (meta, lr, entries)
}

#[test]
fn fresh_1chunk() {
    let (meta, lr, entries) = check_image("fresh-1chunk", "nvme1n1", "outputs/013-dumpfs.stdout");
    assert_eq!(meta.nchunk, 1);
    assert_eq!(
        (lr.num_hosts.get(), lr.max_hosts.get(), lr.log_size.get()),
        (30, 254, 1 << 30)
    );
    assert_eq!((lr.head_txid.get(), lr.head_offset.get()), (0, 0));
    assert!(entries.is_empty());
    assert_eq!(meta.journal_blocks().first(), Some(&(2 * BLOCK_SIZE)));
    let mut names = meta.names();
    names.sort();
    assert_eq!(
        names,
        vec![b".pfs-journal".to_vec(), b".pfs-paxos".to_vec()]
    );
}

#[test]
fn fresh_3chunk_u10() {
    let (meta, lr, _) = check_image("fresh-3chunk-u10", "nvme1n1", "outputs/013-dumpfs.stdout");
    assert_eq!(meta.nchunk, 3);
    assert_eq!(lr.num_hosts.get(), 10);
    // Journal blocks go round-robin over chunks 1, 2, 0 (map-journal).
    let chunks: Vec<u64> = meta
        .journal_blocks()
        .iter()
        .take(6)
        .map(|b| b / CHUNK_SIZE)
        .collect();
    assert_eq!(chunks, vec![1, 2, 0, 1, 2, 0]);
    for c in [1u32, 2] {
        let ck_out = output(
            "fresh-3chunk-u10",
            if c == 1 {
                "outputs/038-dumpfs-c1.stdout"
            } else {
                "outputs/048-dumpfs-c2.stdout"
            },
        );
        let sum = meta_checksum_line(&ck_out);
        let img = RawImage::open(&expand("fresh-3chunk-u10", "nvme1n1")).unwrap();
        let ck =
            ChunkPhy::decode(&img.read(u64::from(c) * CHUNK_SIZE, 4096), u64::from(c)).unwrap();
        assert_eq!(ck.ck_checksum.get(), sum);
    }
}

fn meta_checksum_line(text: &str) -> u32 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("ck_checksum "))
        .and_then(|v| v.trim().parse().ok())
        .expect("ck_checksum line")
}

#[test]
fn grown() {
    let (meta, _, _) = check_image("grown", "nvme1n1", "outputs/009-dumpfs.stdout");
    assert_eq!(meta.nchunk, 2);
}

#[test]
fn cross_pbd() {
    check_image("cross-pbd", "nvme1n1", "outputs/043-dumpfs-nvme1n1.stdout");
    check_image("cross-pbd", "nvme2n1", "outputs/049-dumpfs-nvme2n1.stdout");
}

#[test]
fn populated_journal_replays_to_flushed_metasets() {
    let (mut meta, lr, entries) = check_image("populated", "nvme1n1", "outputs/102-dumpfs.stdout");
    // dumple printed one le_txid line per committed entry.
    let dumple = output("populated", "outputs/107-dumple-valid.stdout");
    let printed = dumple
        .lines()
        .filter(|l| l.starts_with(" le_txid "))
        .count();
    assert_eq!(entries.len(), printed);
    assert_eq!(entries.len() as u64, lr.head_lsn.get());

    // Applying the entries in order gives exactly the metasets `flushlog` wrote.
    for (le, id) in &entries {
        meta.objs.insert(*id, le.le_obj_val);
    }
    meta.check_links();
    let (flushed, flr, rest) = check_image(
        "populated",
        "nvme1n1-flushlog",
        "flushlog/outputs/005-dumpfs.stdout",
    );
    assert!(rest.is_empty(), "flushlog leaves no committed entries");
    assert_eq!(flr.tail_txid.get(), lr.head_txid.get());
    assert_eq!(meta.counts(), flushed.counts());
    for (id, mo) in &flushed.objs {
        assert_eq!(meta.objs[id], *mo, "object {:?} after replay", id);
    }

    // Long names reassemble from extension direntries.
    let names = flushed.names();
    let lens: Vec<usize> = names.iter().map(Vec::len).filter(|&l| l > 63).collect();
    assert!(
        lens.contains(&150) && lens.contains(&255) && lens.contains(&120),
        "{lens:?}"
    );
}

#[test]
fn populated_before_cp() {
    let (meta, _, entries) = check_image(
        "populated",
        "nvme1n1-before-cp",
        "outputs/102-dumpfs.stdout",
    );
    let (_, _, all) = check_image("populated", "nvme1n1", "outputs/102-dumpfs.stdout");
    assert!(entries.len() < all.len());
    assert_eq!(meta.nchunk, 1);
}
