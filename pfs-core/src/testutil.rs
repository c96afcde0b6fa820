//! Set-up shared by the unit tests of several modules.

use crate::device::{Device, MemDevice};
use crate::mkfs::{mkfs, MkfsOptions};
use crate::{Mode, Mount, MountOptions, OpenOptions};
use pfs_format::layout::{CHUNK_SIZE, MIN_LOG_SIZE};
use std::sync::Arc;

/// A writer's mount (host 1) of a freshly made one-chunk memory device.
pub(crate) fn mem_writer() -> Arc<Mount> {
    writer_on(Arc::new(MemDevice::new("mem", CHUNK_SIZE)))
}

/// A writer's mount (host 1) of `dev`, freshly made with the smallest
/// journal.
pub(crate) fn writer_on(dev: Arc<dyn Device>) -> Arc<Mount> {
    let opts = MkfsOptions {
        log_size: MIN_LOG_SIZE,
        ..MkfsOptions::default()
    };
    mkfs(dev.as_ref(), &opts).unwrap();
    let opts = MountOptions {
        hostid: 1,
        ..MountOptions::default()
    };
    Arc::new(Mount::open_with(dev, Mode::ReadWrite, &opts).unwrap())
}

/// Options of a handle that writes behind, creating the file.
pub(crate) fn behind() -> OpenOptions {
    OpenOptions {
        create: true,
        write: true,
        write_behind: true,
        ..OpenOptions::default()
    }
}
