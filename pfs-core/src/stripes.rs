//! Striped reader-writer locks by inode number: the in-process half of
//! the data locks ([`crate::datalock`]), kept by a mount of its own or, for
//! the mounts of a shared host, by the process's [`crate::share::Share`].

use parking_lot::RwLock;

/// Number of in-process lock stripes.
const STRIPES: usize = 64;

/// The in-process half: one reader-writer lock per stripe of inodes.
pub(crate) struct Stripes(Box<[RwLock<()>]>);

impl Default for Stripes {
    fn default() -> Self {
        Stripes((0..STRIPES).map(|_| RwLock::new(())).collect())
    }
}

impl std::fmt::Debug for Stripes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stripes")
    }
}

impl Stripes {
    /// The lock of inode `ino`'s stripe.
    pub(crate) fn of(&self, ino: u64) -> &RwLock<()> {
        &self.0[(ino % STRIPES as u64) as usize]
    }
}
