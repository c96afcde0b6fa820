//! The error type of `pfs-format`: every way on-disk bytes can be wrong.

use crate::objno::MetaType;
use core::fmt;

/// Result alias of this crate.
pub type Result<T, E = FormatError> = core::result::Result<T, E>;

/// What is wrong with decoded bytes or with a value handed to an encoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A buffer is shorter than the structure read from it.
    #[error("{what} needs {need} bytes, buffer has {got}")]
    Short {
        /// Structure being read.
        what: &'static str,
        /// Bytes the structure takes.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("corrupt {kind} at {at}: expected {expected}, found {}", expected.show(*found))]
    Corrupt {
        /// Which check failed.
        kind: CorruptKind,
        /// Where the bad bytes are.
        at: Box<Location>,
        /// What a valid value is.
        expected: Expected,
        /// The value found.
        found: u64,
    },
    /// The on-disk format version is newer than this build understands.
    #[error(
        "incompatible PFS format version {found} at {at} (this build knows versions below {max})"
    )]
    Incompatible {
        /// Where the version was read.
        at: Box<Location>,
        /// Version found.
        found: u64,
        /// First version not understood.
        max: u64,
    },
    /// A file name is longer than PFS can store.
    #[error("file name is {len} bytes long, the limit is {max}")]
    NameTooLong {
        /// Length of the name.
        len: usize,
        /// Longest allowed name.
        max: usize,
    },
    /// A file name that is empty or holds a `/` or NUL byte.
    #[error("invalid file name: {reason}")]
    InvalidName {
        /// Why the name is refused.
        reason: &'static str,
    },
}

impl FormatError {
    /// Adds the device name to the error's location.
    pub fn on_device(mut self, device: &str) -> Self {
        if let FormatError::Corrupt { at, .. } | FormatError::Incompatible { at, .. } = &mut self {
            at.device = Some(device.to_owned());
        }
        self
    }

    /// Sets the byte address (device address or journal offset) of the
    /// error's location.
    pub fn at_offset(mut self, offset: u64) -> Self {
        if let FormatError::Corrupt { at, .. } | FormatError::Incompatible { at, .. } = &mut self {
            at.offset = Some(offset);
        }
        self
    }

    /// The kind of corruption, when this is a corruption error.
    pub fn corrupt_kind(&self) -> Option<CorruptKind> {
        match self {
            FormatError::Corrupt { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// Which structure and field failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CorruptKind {
    /// `ck_magic` is not the PFS chunk magic.
    ChunkMagic,
    /// `ck_chunksize` is not 10 GiB.
    ChunkSize,
    /// `ck_blksize` is not 4 MiB.
    BlockSize,
    /// `ck_sectsize` is not 4 KiB.
    SectorSize,
    /// `ck_number` is not the chunk's position on the device.
    ChunkNumber,
    /// `ck_nchunk` is zero, too large, or does not cover this chunk.
    ChunkCount,
    /// A metaset descriptor does not describe the standard layout.
    MetasetLayout,
    /// `ck_checksum` does not match.
    ChunkChecksum,
    /// `mo_checksum` does not match.
    ObjectChecksum,
    /// `mo_type` is not the metaset's type.
    ObjectType,
    /// `mo_number` is not the object's position, or is out of range.
    ObjectNumber,
    /// `mo_used` is neither 0 nor 1.
    ObjectUsed,
    /// A link to another object names no object of the device.
    DanglingObject,
    /// A direntry's name is not a valid name or its chain is broken.
    DirentryName,
    /// Leader record magic is wrong.
    LeaderMagic,
    /// Leader record version is not one this build reads.
    LeaderVersion,
    /// Leader record sector size is not 4 KiB.
    LeaderSectorSize,
    /// Leader record host counts are impossible.
    LeaderHosts,
    /// Leader record journal size is impossible.
    LeaderLogSize,
    /// Leader record journal offsets or ids are impossible.
    LeaderJournalRange,
    /// Leader record checksum does not match.
    LeaderChecksum,
    /// `le_checksum` does not match.
    LogEntryChecksum,
    /// `le_sector_bda`/`le_obj_idx` do not name the logged object's home.
    LogEntryHome,
    /// `le_lsn`, `le_txid` or `le_more` hold impossible values.
    LogEntryField,
}

impl fmt::Display for CorruptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            CorruptKind::ChunkMagic => "chunk magic",
            CorruptKind::ChunkSize => "chunk size",
            CorruptKind::BlockSize => "block size",
            CorruptKind::SectorSize => "sector size",
            CorruptKind::ChunkNumber => "chunk number",
            CorruptKind::ChunkCount => "chunk count",
            CorruptKind::MetasetLayout => "metaset layout",
            CorruptKind::ChunkChecksum => "chunk header checksum",
            CorruptKind::ObjectChecksum => "meta object checksum",
            CorruptKind::ObjectType => "meta object type",
            CorruptKind::ObjectNumber => "meta object number",
            CorruptKind::ObjectUsed => "meta object used flag",
            CorruptKind::DanglingObject => "object reference",
            CorruptKind::DirentryName => "direntry name",
            CorruptKind::LeaderMagic => "leader record magic",
            CorruptKind::LeaderVersion => "leader record version",
            CorruptKind::LeaderSectorSize => "leader record sector size",
            CorruptKind::LeaderHosts => "leader record host count",
            CorruptKind::LeaderLogSize => "leader record journal size",
            CorruptKind::LeaderJournalRange => "leader record journal range",
            CorruptKind::LeaderChecksum => "leader record checksum",
            CorruptKind::LogEntryChecksum => "log entry checksum",
            CorruptKind::LogEntryHome => "log entry home address",
            CorruptKind::LogEntryField => "log entry field",
        };
        f.write_str(s)
    }
}

/// What a valid value would have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this value, shown in decimal.
    Value(u64),
    /// Exactly this value, shown in hexadecimal (magics, checksums, addresses).
    Hex(u64),
    /// A value strictly below this bound.
    Below(u64),
    /// A value in `lo..=hi`.
    Within(u64, u64),
    /// Described in words.
    Desc(&'static str),
}

impl Expected {
    fn show(&self, found: u64) -> String {
        match self {
            Expected::Hex(_) => format!("{found:#x}"),
            _ => found.to_string(),
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Value(v) => write!(f, "{v}"),
            Expected::Hex(v) => write!(f, "{v:#x}"),
            Expected::Below(v) => write!(f, "a value below {v}"),
            Expected::Within(lo, hi) => write!(f, "a value in {lo}..={hi}"),
            Expected::Desc(s) => f.write_str(s),
        }
    }
}

/// Where a structure lives: device, chunk, object, byte address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// PBD name, when the caller knows it.
    pub device: Option<String>,
    /// Chunk number.
    pub chunk: Option<u64>,
    /// Meta object type and number (`mo_number`).
    pub object: Option<(MetaType, u64)>,
    /// A named structure without an object number (leader, log entry ...).
    pub structure: Option<&'static str>,
    /// Byte address on the device or offset in the journal.
    pub offset: Option<u64>,
}

impl Location {
    /// A chunk header.
    pub fn chunk(chunk: u64) -> Self {
        Location {
            chunk: Some(chunk),
            structure: Some("chunk header"),
            ..Location::default()
        }
    }

    /// A meta object.
    pub fn object(mtype: MetaType, number: u64) -> Self {
        Location {
            object: Some((mtype, number)),
            ..Location::default()
        }
    }

    /// A structure that has no object number.
    pub fn structure(name: &'static str) -> Self {
        Location {
            structure: Some(name),
            ..Location::default()
        }
    }

    /// Sets the byte address.
    pub fn at_offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(d) = &self.device {
            parts.push(format!("device {d}"));
        }
        if let Some(s) = self.structure {
            parts.push(s.to_owned());
        }
        if let Some(c) = self.chunk {
            parts.push(format!("chunk {c}"));
        }
        if let Some((t, n)) = self.object {
            parts.push(format!("{t} {n}"));
        }
        if let Some(o) = self.offset {
            parts.push(format!("offset {o:#x}"));
        }
        if parts.is_empty() {
            f.write_str("unknown place")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Builds a [`FormatError::Corrupt`].
pub(crate) fn corrupt(
    kind: CorruptKind,
    at: Location,
    expected: Expected,
    found: u64,
) -> FormatError {
    FormatError::Corrupt {
        kind,
        at: Box::new(at),
        expected,
        found,
    }
}

/// Reads a `Pod` structure from the start of `bytes` without panicking.
pub(crate) fn read_pod<T: bytemuck::Pod>(bytes: &[u8], what: &'static str) -> Result<T> {
    let need = core::mem::size_of::<T>();
    let head = bytes.get(..need).ok_or(FormatError::Short {
        what,
        need,
        got: bytes.len(),
    })?;
    bytemuck::try_pod_read_unaligned(head).map_err(|_| FormatError::Short {
        what,
        need,
        got: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_context() {
        let e = corrupt(
            CorruptKind::ChunkMagic,
            Location::chunk(3).at_offset(3 * crate::layout::CHUNK_SIZE),
            Expected::Hex(0x5046534348),
            0,
        )
        .on_device("nvme1n1");
        let s = e.to_string();
        assert!(s.contains("device nvme1n1"), "{s}");
        assert!(s.contains("chunk 3"), "{s}");
        assert!(s.contains("expected 0x5046534348, found 0x0"), "{s}");
        assert_eq!(e.corrupt_kind(), Some(CorruptKind::ChunkMagic));
    }

    #[test]
    fn short_buffer_is_an_error() {
        let r: Result<[u8; 8]> = read_pod(&[1, 2, 3], "thing");
        assert_eq!(
            r,
            Err(FormatError::Short {
                what: "thing",
                need: 8,
                got: 3
            })
        );
    }
}
