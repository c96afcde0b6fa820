//! Text dumps of on-disk structures in the reference's exact format
//! (`DUMP_FIELD`: indent `2 * level` (at least one space), name padded to 10,
//! a space, the value).

use pfs_format::{LogEntryPhy, MetaObjPhy, MetaType};
use std::io::{self, Write};

/// One `name value` line at `level`.
pub fn field(
    out: &mut dyn Write,
    level: usize,
    name: &str,
    value: impl std::fmt::Display,
) -> io::Result<()> {
    let indent = (2 * level).max(1);
    writeln!(out, "{:>indent$}{name:<10} {value}", " ")
}

/// One `name value` line whose value is bytes written as they are (a
/// direntry's name piece, which need not be UTF-8, printed as the
/// reference's `%.64s` does).
pub fn field_bytes(out: &mut dyn Write, level: usize, name: &str, value: &[u8]) -> io::Result<()> {
    let indent = (2 * level).max(1);
    write!(out, "{:>indent$}{name:<10} ", " ")?;
    out.write_all(value)?;
    writeln!(out)
}

/// `pfs_metaobj_dump`.
pub fn metaobj(out: &mut dyn Write, mo: &MetaObjPhy, level: usize) -> io::Result<()> {
    match mo.mtype() {
        Some(t) => field(out, level, "mo_type", t.name())?,
        None => field(out, level, "mo_type", mo.mo_type)?,
    }
    field(out, level, "mo_number", mo.mo_number.get())?;
    field(out, level, "mo_checksum", mo.mo_checksum.get())?;
    field(out, level, "mo_used", mo.mo_used)?;
    field(out, level, "mo_version", mo.mo_version.get())?;
    match mo.mtype() {
        Some(MetaType::BlkTag) => {
            let bt = mo.blktag();
            field(out, level, "mo_next", mo.mo_next.get())?;
            field(out, level, "mo_prev", mo.mo_prev.get())?;
            field(out, level + 1, "bt_ino", bt.bt_ino.get() as u64)?;
            field(out, level + 1, "bt_blkid", bt.bt_blkid.get() as u64)?;
            field(out, level + 1, "bt_dstatus", bt.bt_dstatus.get())?;
            field(out, level + 1, "bt_ndiscard", bt.bt_ndiscard.get())?;
            field(out, level + 1, "bt_holelen", bt.bt_holelen.get())?;
            field(out, level + 1, "bt_holeoff", bt.bt_holeoff.get())?;
        }
        Some(MetaType::DirEntry) => {
            let de = mo.direntry();
            field(out, level, "mo_next", mo.mo_next.get())?;
            field(out, level, "mo_prev", mo.mo_prev.get())?;
            let (piece, _) = de.name_piece();
            field_bytes(out, level + 1, "de_name", piece)?;
            if de.is_ext() {
                field(out, level + 1, "de_headdeno", de.de_headdeno())?;
            } else {
                field(out, level + 1, "de_dirino", de.de_dirino.get())?;
                field(out, level + 1, "de_ino", de.de_ino.get())?;
            }
            field(out, level + 1, "de_extdeno", de.de_extdeno.get())?;
        }
        Some(MetaType::Inode) => {
            let i = mo.inode();
            field(out, level, "mo_head", mo.mo_next.get())?;
            field(out, level, "mo_tail", mo.mo_prev.get())?;
            field(out, level + 1, "in_type", i.in_type)?;
            field(out, level + 1, "in_deno", i.in_deno.get())?;
            field(out, level + 1, "in_flags", i.in_flags)?;
            field(out, level + 1, "in_pvtid", i.in_pvtid.get())?;
            field(out, level + 1, "in_nlink", i.in_nlink.get())?;
            field(out, level + 1, "in_nblock", i.in_nblock.get())?;
            field(out, level + 1, "in_size", i.in_size.get())?;
            field(out, level + 1, "in_atime", i.in_atime.get())?;
            field(out, level + 1, "in_ctime", i.in_ctime.get())?;
            field(out, level + 1, "in_mtime", i.in_mtime.get())?;
        }
        None => {}
    }
    Ok(())
}

/// `pfs_log_dump` of one entry.
pub fn logentry(out: &mut dyn Write, le: &LogEntryPhy, level: usize) -> io::Result<()> {
    field(out, level, "le_txid", le.le_txid.get())?;
    field(out, level, "le_lsn", le.le_lsn.get())?;
    field(out, level, "le_sector_bda", le.le_sector_bda.get())?;
    field(out, level, "le_obj_idx", le.le_obj_idx.get())?;
    field(out, level, "le_checksum", le.le_checksum.get())?;
    if !le.checksum_ok() {
        field(out, level, "(le_checksum_isvalid)", "false")?;
    }
    field(out, level, "le_more", le.le_more.get())?;
    metaobj(out, &le.le_obj_val, level + 1)
}
