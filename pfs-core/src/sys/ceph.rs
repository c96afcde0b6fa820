//! librados and librbd, loaded when first needed (`dlopen`), so the crate
//! builds and runs on machines without Ceph: only opening an RBD image
//! needs `librbd.so.1` and `librados.so.2`.
//!
//! The handles are owned: an [`Image`] keeps its [`IoCtx`] alive, and an
//! [`IoCtx`] its [`Cluster`], so they are closed in the one order librbd
//! allows (image, then I/O context, then the cluster connection). librados
//! and librbd handles may be used from any thread at once (each call takes
//! the library's own locks), which is what makes them `Send` and `Sync`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

type RadosT = *mut c_void;
type IoCtxT = *mut c_void;
type ImageT = *mut c_void;

/// Declares the library functions used, each with its C prototype and
/// the library it is in: the table [`Lib`] of them and [`resolve`], which
/// finds each one by name.
macro_rules! functions {
    ($($lib:ident $name:ident: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// The library functions used, resolved once per process.
        struct Lib {
            $($name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
        }

        /// Finds every function of [`Lib`] in the libraries `rados` and
        /// `rbd` (handles from [`dlopen`]).
        fn resolve(rados: *mut c_void, rbd: *mut c_void) -> Result<Lib, String> {
            let handles = [(LIBRADOS, rados), (LIBRBD, rbd)];
            Ok(Lib {
                $($name: {
                    let (file, h) = handles[functions!(@index $lib)];
                    let p = dlsym(h, file, stringify!($name))?;
                    // SAFETY: `p` is the address of the C function of that
                    // name, whose prototype (librados.h / librbd.h) is the
                    // type it is turned into; the library stays loaded for
                    // the life of the process.
                    unsafe {
                        std::mem::transmute::<*mut c_void, unsafe extern "C" fn($($arg),*) $(-> $ret)?>(p)
                    }
                },)*
            })
        }
    };
    (@index rados) => { 0 };
    (@index rbd) => { 1 };
}

functions! {
    rados rados_create: fn(*mut RadosT, *const c_char) -> c_int;
    rados rados_conf_read_file: fn(RadosT, *const c_char) -> c_int;
    rados rados_conf_parse_env: fn(RadosT, *const c_char) -> c_int;
    rados rados_conf_set: fn(RadosT, *const c_char, *const c_char) -> c_int;
    rados rados_connect: fn(RadosT) -> c_int;
    rados rados_shutdown: fn(RadosT);
    rados rados_cluster_fsid: fn(RadosT, *mut c_char, usize) -> c_int;
    rados rados_ioctx_create: fn(RadosT, *const c_char, *mut IoCtxT) -> c_int;
    rados rados_ioctx_destroy: fn(IoCtxT);
    rados rados_getaddrs: fn(RadosT, *mut *mut c_char) -> c_int;
    rados rados_get_instance_id: fn(RadosT) -> u64;
    rados rados_blocklist_add: fn(RadosT, *mut c_char, u32) -> c_int;
    rbd rbd_open: fn(IoCtxT, *const c_char, *mut ImageT, *const c_char) -> c_int;
    rbd rbd_open_read_only: fn(IoCtxT, *const c_char, *mut ImageT, *const c_char) -> c_int;
    rbd rbd_close: fn(ImageT) -> c_int;
    rbd rbd_get_size: fn(ImageT, *mut u64) -> c_int;
    rbd rbd_read2: fn(ImageT, u64, usize, *mut c_char, c_int) -> isize;
    rbd rbd_write2: fn(ImageT, u64, usize, *const c_char, c_int) -> isize;
    rbd rbd_discard: fn(ImageT, u64, u64) -> c_int;
    rbd rbd_write_zeroes: fn(ImageT, u64, usize, c_int, c_int) -> isize;
    rbd rbd_flush: fn(ImageT) -> c_int;
    rbd rbd_metadata_set: fn(ImageT, *const c_char, *const c_char) -> c_int;
    rbd rbd_metadata_remove: fn(ImageT, *const c_char) -> c_int;
    rbd rbd_metadata_list: fn(ImageT, *const c_char, u64, *mut c_char, *mut usize, *mut c_char, *mut usize) -> c_int;
}

/// The libraries, by their run-time names.
const LIBRADOS: &str = "librados.so.2";
const LIBRBD: &str = "librbd.so.1";

static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();

/// The loaded libraries, or why they cannot be loaded.
fn lib() -> io::Result<&'static Lib> {
    LIB.get_or_init(load)
        .as_ref()
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.clone()))
}

/// `dlopen`s a library for good (never closed: Ceph's libraries start
/// threads and register destructors that must outlive every handle).
fn dlopen(name: &str) -> Result<*mut c_void, String> {
    let cname = CString::new(name).map_err(|_| format!("bad library name {name:?}"))?;
    // SAFETY: `cname` is a NUL-terminated string that outlives the call;
    // dlopen runs the library's initialisers, which Ceph's libraries allow
    // at any time.
    let h = unsafe { libc::dlopen(cname.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() {
        return Err(format!(
            "{name} cannot be loaded ({}); RBD devices need Ceph's client libraries \
             (Debian: apt-get install librbd1 librados2)",
            dlerror()
        ));
    }
    Ok(h)
}

/// The last `dlopen`/`dlsym` error message.
fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by the
    // C library, valid until the next dl* call of this thread; it is
    // copied at once.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        return "unknown error".to_owned();
    }
    // SAFETY: as above, `p` is a valid NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The address of symbol `name` in library `h`.
fn dlsym(h: *mut c_void, lib: &str, name: &str) -> Result<*mut c_void, String> {
    let cname = CString::new(name).map_err(|_| format!("bad symbol name {name:?}"))?;
    // SAFETY: `h` is a handle dlopen returned (never closed); `cname` is
    // NUL-terminated and outlives the call.
    let p = unsafe { libc::dlsym(h, cname.as_ptr()) };
    if p.is_null() {
        return Err(format!(
            "{lib} has no {name} ({}); it is too old for PFS (librbd 15 or later needed)",
            dlerror()
        ));
    }
    Ok(p)
}

fn load() -> Result<Lib, String> {
    let rados = dlopen(LIBRADOS)?;
    let rbd = dlopen(LIBRBD)?;
    resolve(rados, rbd)
}

/// A Ceph return value: negative errno on failure.
fn check(r: i64) -> io::Result<u64> {
    if r < 0 {
        Err(io::Error::from_raw_os_error((-r) as i32))
    } else {
        Ok(r as u64)
    }
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// The strings of a buffer holding `n` bytes of NUL-terminated strings
/// one after another.
fn nul_list(buf: &[u8], n: usize) -> Vec<String> {
    let used = &buf[..n.min(buf.len())];
    let used = used.strip_suffix(&[0]).unwrap_or(used);
    if used.is_empty() {
        return Vec::new();
    }
    used.split(|&c| c == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The status flags of standard input, output and error. Ceph's logging
/// makes standard error non-blocking when a client starts, and with it
/// standard output where both are one pipe or terminal: the tool's output
/// then fails with EAGAIN when a reader is slow, and a program linking
/// `libpfsd` sees its own writes fail. They are put back after connecting.
struct StdioFlags([Option<i32>; 3]);

impl StdioFlags {
    fn save() -> StdioFlags {
        StdioFlags([0, 1, 2].map(|fd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).ok()))
    }

    fn restore(&self) {
        for (fd, saved) in (0..).zip(self.0) {
            let Some(saved) = saved else { continue };
            let now = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL);
            if now.is_ok_and(|now| now != saved) {
                let _ = nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_truncate(saved)),
                );
            }
        }
    }
}

/// The step of [`Cluster::connect`] that failed, and how.
#[derive(Debug)]
pub struct ConnectError {
    /// The library call that failed (`rados_connect` ...).
    pub step: &'static str,
    /// Its error.
    pub source: io::Error,
}

/// A connection to a cluster (`rados_t`).
pub struct Cluster {
    lib: &'static Lib,
    handle: RadosT,
}

// SAFETY: a rados_t may be used from any thread, and by several at once:
// librados serialises what needs it internally.
unsafe impl Send for Cluster {}
// SAFETY: as for Send.
unsafe impl Sync for Cluster {}

impl Cluster {
    /// Connects as client `user` (`None`: `admin`) with the configuration
    /// file `conf` (`None`: Ceph's own search, `$CEPH_CONF` then
    /// `/etc/ceph/ceph.conf` ...), then `$CEPH_ARGS`, then `overrides`
    /// (option, value), which win over both.
    pub fn connect(
        user: Option<&str>,
        conf: Option<&Path>,
        overrides: &[(&str, &str)],
    ) -> Result<Cluster, ConnectError> {
        let stdio = StdioFlags::save();
        let r = Cluster::connect_inner(user, conf, overrides);
        stdio.restore();
        r
    }

    fn connect_inner(
        user: Option<&str>,
        conf: Option<&Path>,
        overrides: &[(&str, &str)],
    ) -> Result<Cluster, ConnectError> {
        let err = |step| move |source| ConnectError { step, source };
        let lib = lib().map_err(err("dlopen"))?;
        let user = user.map(cstring).transpose().map_err(err("rados_create"))?;
        let mut handle: RadosT = std::ptr::null_mut();
        // SAFETY: `handle` is a live local the call writes the new handle
        // to; `user` is NULL or a NUL-terminated string outliving the call.
        let r = unsafe {
            (lib.rados_create)(
                &mut handle,
                user.as_ref().map_or(std::ptr::null(), |u| u.as_ptr()),
            )
        };
        check(r.into()).map_err(err("rados_create"))?;
        // From here on the handle is shut down on every path (Drop).
        let cluster = Cluster { lib, handle };
        let conf = conf
            .map(|p| {
                use std::os::unix::ffi::OsStrExt;
                CString::new(p.as_os_str().as_bytes())
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
            })
            .transpose()
            .map_err(err("rados_conf_read_file"))?;
        // SAFETY: the handle is live and not connected yet; `conf` is NULL
        // (search the default places) or a NUL-terminated path.
        let r = unsafe {
            (lib.rados_conf_read_file)(
                cluster.handle,
                conf.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            )
        };
        check(r.into()).map_err(err("rados_conf_read_file"))?;
        // SAFETY: the handle is live and not connected; NULL means
        // `CEPH_ARGS`.
        let r = unsafe { (lib.rados_conf_parse_env)(cluster.handle, std::ptr::null()) };
        check(r.into()).map_err(err("rados_conf_parse_env"))?;
        for (opt, val) in overrides {
            let (o, v) = (
                cstring(opt).map_err(err("rados_conf_set"))?,
                cstring(val).map_err(err("rados_conf_set"))?,
            );
            // SAFETY: the handle is live and not connected; both strings
            // are NUL-terminated and outlive the call.
            let r = unsafe { (lib.rados_conf_set)(cluster.handle, o.as_ptr(), v.as_ptr()) };
            check(r.into()).map_err(err("rados_conf_set"))?;
        }
        // SAFETY: the handle is live, configured and not connected.
        let r = unsafe { (lib.rados_connect)(cluster.handle) };
        check(r.into()).map_err(err("rados_connect"))?;
        Ok(cluster)
    }

    /// The cluster's fsid (a UUID in text).
    pub fn fsid(&self) -> io::Result<String> {
        let mut buf = [0u8; 64];
        // SAFETY: the handle is connected; the call writes at most
        // `buf.len()` bytes, NUL included, into `buf`.
        let r = unsafe {
            (self.lib.rados_cluster_fsid)(self.handle, buf.as_mut_ptr().cast(), buf.len())
        };
        check(r.into())?;
        let s =
            CStr::from_bytes_until_nul(&buf).map_err(|_| io::Error::other("fsid without NUL"))?;
        Ok(s.to_string_lossy().into_owned())
    }
}

impl Cluster {
    /// This client's addresses as the cluster knows them
    /// (`127.0.0.1:0/3317405751`), what [`Cluster::blocklist_add`] of
    /// another client takes.
    pub fn addrs(&self) -> io::Result<String> {
        let mut p: *mut c_char = std::ptr::null_mut();
        // SAFETY: the handle is connected; the call stores a string it
        // allocated with malloc (strdup) in `p`.
        let r = unsafe { (self.lib.rados_getaddrs)(self.handle, &mut p) };
        check(r.into())?;
        if p.is_null() {
            return Err(io::Error::other("rados_getaddrs gave no address"));
        }
        // SAFETY: `p` is the NUL-terminated string just returned; it is
        // copied before being freed below.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: `p` came from malloc inside librados and is freed once.
        unsafe { libc::free(p.cast()) };
        Ok(s)
    }

    /// The cluster's number for this connection (the `4140` of
    /// `client.4140`), unique among the cluster's live clients.
    pub fn instance_id(&self) -> u64 {
        // SAFETY: the handle is connected; the call only reads it.
        unsafe { (self.lib.rados_get_instance_id)(self.handle) }
    }

    /// Blocklists client address `addr` for `expire_secs` seconds (0: the
    /// cluster's default, an hour): the OSDs refuse its operations from
    /// now on (`EBLOCKLISTED`, which is `ESHUTDOWN`). Returns once this
    /// client has the OSD map that says so, so its own next operation
    /// makes every OSD it reaches refuse the blocklisted client.
    pub fn blocklist_add(&self, addr: &str, expire_secs: u32) -> io::Result<()> {
        let a = cstring(addr)?;
        // SAFETY: the handle is connected; librados only reads the
        // NUL-terminated address (the prototype lacks `const`), which
        // outlives the call.
        let r = unsafe {
            (self.lib.rados_blocklist_add)(self.handle, a.as_ptr().cast_mut(), expire_secs)
        };
        check(r.into()).map(drop)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: the handle came from rados_create and is shut down once;
        // every I/O context and image made from it holds an `Arc` of this
        // cluster, so none is open any more.
        unsafe { (self.lib.rados_shutdown)(self.handle) };
    }
}

/// An I/O context of one pool (`rados_ioctx_t`).
pub struct IoCtx {
    handle: IoCtxT,
    cluster: Arc<Cluster>,
}

// SAFETY: I/O contexts may be shared between threads; librados locks
// their state internally.
unsafe impl Send for IoCtx {}
// SAFETY: as for Send.
unsafe impl Sync for IoCtx {}

impl IoCtx {
    /// Opens pool `pool` of `cluster`.
    pub fn new(cluster: &Arc<Cluster>, pool: &str) -> io::Result<IoCtx> {
        let pool = cstring(pool)?;
        let mut handle: IoCtxT = std::ptr::null_mut();
        // SAFETY: the cluster is connected; `pool` is NUL-terminated and
        // `handle` a live local the call writes the context to.
        let r =
            unsafe { (cluster.lib.rados_ioctx_create)(cluster.handle, pool.as_ptr(), &mut handle) };
        check(r.into())?;
        Ok(IoCtx {
            handle,
            cluster: Arc::clone(cluster),
        })
    }
}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: the handle came from rados_ioctx_create and is destroyed
        // once, before the cluster (which `self.cluster` keeps alive); the
        // images opened in it hold an `Arc` of it, so none is open.
        unsafe { (self.cluster.lib.rados_ioctx_destroy)(self.handle) };
    }
}

/// An open RBD image (`rbd_image_t`).
pub struct Image {
    handle: ImageT,
    io: Arc<IoCtx>,
}

// SAFETY: librbd image handles may be used by several threads at once
// (the image context locks its state; I/O calls are independent).
unsafe impl Send for Image {}
// SAFETY: as for Send.
unsafe impl Sync for Image {}

/// Bytes per librbd call: lengths come back as `int` in some calls.
const MAX_CALL: usize = 1 << 30;

impl Image {
    /// Opens image `name` in `io`, read-only when `read_only`.
    pub fn open(io: &Arc<IoCtx>, name: &str, read_only: bool) -> io::Result<Image> {
        let lib = io.cluster.lib;
        let name = cstring(name)?;
        let mut handle: ImageT = std::ptr::null_mut();
        let open = if read_only {
            lib.rbd_open_read_only
        } else {
            lib.rbd_open
        };
        // SAFETY: the context is open; `name` is NUL-terminated, the
        // snapshot NULL (the image itself), and `handle` a live local the
        // call writes the image to.
        let r = unsafe { open(io.handle, name.as_ptr(), &mut handle, std::ptr::null()) };
        check(r.into())?;
        Ok(Image {
            handle,
            io: Arc::clone(io),
        })
    }

    fn lib(&self) -> &'static Lib {
        self.io.cluster.lib
    }

    /// The cluster connection the image was opened through.
    pub fn cluster(&self) -> &Cluster {
        &self.io.cluster
    }

    /// Sets the image's metadata key `key` to `value` (kept in the
    /// image's header object, seen by every client).
    pub fn metadata_set(&self, key: &str, value: &str) -> io::Result<()> {
        let (k, v) = (cstring(key)?, cstring(value)?);
        // SAFETY: the image is open; both strings are NUL-terminated and
        // outlive the call.
        let r = unsafe { (self.lib().rbd_metadata_set)(self.handle, k.as_ptr(), v.as_ptr()) };
        check(r.into()).map(drop)
    }

    /// Removes the image's metadata key `key` (`ENOENT` when there is
    /// none).
    pub fn metadata_remove(&self, key: &str) -> io::Result<()> {
        let k = cstring(key)?;
        // SAFETY: the image is open; `k` is NUL-terminated and outlives
        // the call.
        let r = unsafe { (self.lib().rbd_metadata_remove)(self.handle, k.as_ptr()) };
        check(r.into()).map(drop)
    }

    /// Every metadata key of the image and its value, in key order.
    pub fn metadata_list(&self) -> io::Result<Vec<(String, String)>> {
        let (mut keys, mut vals) = (vec![0u8; 4096], vec![0u8; 4096]);
        let start = cstring("")?;
        for _ in 0..8 {
            let (mut klen, mut vlen) = (keys.len(), vals.len());
            // SAFETY: the image is open; librbd writes at most `klen` and
            // `vlen` bytes into the two buffers, which are that long, and
            // stores the lengths used (or needed) in the two locals.
            let r = unsafe {
                (self.lib().rbd_metadata_list)(
                    self.handle,
                    start.as_ptr(),
                    0,
                    keys.as_mut_ptr().cast(),
                    &mut klen,
                    vals.as_mut_ptr().cast(),
                    &mut vlen,
                )
            };
            if r == -libc::ERANGE {
                keys.resize(klen.max(keys.len() * 2), 0);
                vals.resize(vlen.max(vals.len() * 2), 0);
                continue;
            }
            check(r.into())?;
            let ks = nul_list(&keys, klen);
            let vs = nul_list(&vals, vlen);
            return Ok(ks.into_iter().zip(vs).collect());
        }
        Err(io::Error::other(
            "rbd_metadata_list kept asking for more room",
        ))
    }

    /// The image's size in bytes.
    pub fn size(&self) -> io::Result<u64> {
        let mut size = 0u64;
        // SAFETY: the image is open; the call writes one u64 to `size`.
        let r = unsafe { (self.lib().rbd_get_size)(self.handle, &mut size) };
        check(r.into())?;
        Ok(size)
    }

    /// Fills `buf` from `offset`.
    pub fn read(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let n = (buf.len() - done).min(MAX_CALL);
            let part = &mut buf[done..done + n];
            // SAFETY: the image is open; librbd writes at most `n` bytes
            // into `part`, which is `n` bytes long and borrowed mutably for
            // the call.
            let r = unsafe {
                (self.lib().rbd_read2)(
                    self.handle,
                    offset + done as u64,
                    n,
                    part.as_mut_ptr().cast(),
                    0,
                )
            };
            match check(r as i64)? {
                0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                got => done += got as usize,
            }
        }
        Ok(())
    }

    /// Writes `buf` at `offset`.
    ///
    /// The synchronous call, which copies `buf` first. An asynchronous
    /// write from `buf` itself (zero-copy, `rbd_disable_zero_copy_writes =
    /// false`) saved that copy, but on a client the cluster had
    /// blocklisted its completion never came: librbd completes such a
    /// write only once it holds no reference to the buffer, and a fenced
    /// writer hung in its last write.
    pub fn write(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let n = (buf.len() - done).min(MAX_CALL);
            let part = &buf[done..done + n];
            // SAFETY: the image is open; librbd reads `n` bytes from
            // `part`, which is `n` bytes long and borrowed for the call
            // (the synchronous call copies or finishes with it first).
            let r = unsafe {
                (self.lib().rbd_write2)(
                    self.handle,
                    offset + done as u64,
                    n,
                    part.as_ptr().cast(),
                    0,
                )
            };
            match check(r as i64)? {
                0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                put => done += put as usize,
            }
        }
        Ok(())
    }

    /// Makes every completed write durable (flushes librbd's cache).
    pub fn flush(&self) -> io::Result<()> {
        // SAFETY: the image is open.
        let r = unsafe { (self.lib().rbd_flush)(self.handle) };
        check(r.into()).map(drop)
    }

    /// Discards `len` bytes at `offset`.
    pub fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(MAX_CALL as u64);
            // SAFETY: the image is open; no memory is passed.
            let r = unsafe { (self.lib().rbd_discard)(self.handle, offset + done, n) };
            check(r.into())?;
            done += n;
        }
        Ok(())
    }

    /// Makes `len` bytes at `offset` read as zeros.
    pub fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(MAX_CALL as u64);
            // SAFETY: the image is open; no memory is passed; flags 0 (no
            // thick provisioning, no special op flags).
            let r = unsafe {
                (self.lib().rbd_write_zeroes)(self.handle, offset + done, n as usize, 0, 0)
            };
            check(r as i64)?;
            done += n;
        }
        Ok(())
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: the handle came from rbd_open and is closed once, before
        // its I/O context (kept alive by `self.io`).
        unsafe { (self.lib().rbd_close)(self.handle) };
    }
}
