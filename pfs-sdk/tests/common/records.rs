//! The numbered records of `tests/c/fence.c` and the lines its processes
//! print, collected as they come.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Record `i` of process `tag` as `tests/c/fence.c` writes it.
pub fn record(tag: char, i: usize) -> Vec<u8> {
    let mut r = vec![b'a' + (i % 26) as u8; 4096];
    let head = format!("{tag} {i}\n");
    r[..head.len()].copy_from_slice(head.as_bytes());
    r
}

/// The lines a child process prints, each with when it was read.
pub type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// Reads `out` line by line into the returned list, in a thread.
pub fn collect(out: impl Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let l = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            l.lock().unwrap().push((Instant::now(), line));
        }
    });
    lines
}

/// Waits up to 60 s for a line starting with `prefix`; the line.
pub fn wait_line(lines: &Lines, prefix: &str) -> String {
    let t = Instant::now();
    loop {
        if let Some((_, l)) = lines
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.starts_with(prefix))
        {
            return l.clone();
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no {prefix:?} line");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The record numbers `tag` acknowledged (`ack <tag> <i>`) in `lines`,
/// each with when it was read.
pub fn acked(lines: &[(Instant, String)], tag: char) -> Vec<(Instant, usize)> {
    let prefix = format!("ack {tag} ");
    lines
        .iter()
        .filter_map(|(t, l)| Some((*t, l.strip_prefix(&prefix)?.parse().ok()?)))
        .collect()
}

/// Checks that every record in `acked` is in `file` (the bytes of
/// `rec-<tag>`); panics naming the first one missing.
pub fn all_there(file: &[u8], tag: char, acked: &[(Instant, usize)]) {
    for &(_, i) in acked {
        assert!(
            file.get(i * 4096..(i + 1) * 4096) == Some(&record(tag, i)[..]),
            "acknowledged record {i} of {tag} is not on the image"
        );
    }
}
