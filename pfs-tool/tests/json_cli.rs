//! `--json` outputs, parsed, against the text outputs the reference printed
//! for the same golden image (`chunk-backup`'s restored copy `nvme2n1`).

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device_dir;
use serde_json::Value;

fn json(pfs: &Pfs, args: &[&str]) -> Value {
    let out = pfs.ok_bytes(args);
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "pfs {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    })
}

#[test]
fn json_outputs_parse_and_agree_with_text() {
    let pfs = Pfs::new(device_dir("chunk-backup", &[("nvme2n1", "nvme2n1")]));

    let ls = json(&pfs, &["--json", "ls", "/nvme2n1/"]);
    let names: Vec<&str> = ls["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            ".pfs-paxos",
            ".pfs-journal",
            "dir",
            "five.txt",
            "hello.txt",
            "empty"
        ]
    );
    let five = &ls["entries"][3];
    assert_eq!(five["type"], "file");
    assert_eq!(five["size"], 5_247_201);
    assert_eq!(ls["entries"][2]["type"], "dir");
    // The text's "total N (unit: 512Bytes)".
    let text = pfs.run(&["ls", "/nvme2n1/"]);
    let text = String::from_utf8(text.stdout).unwrap();
    let total: u64 = text
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ls["total_blocks"], total);

    // The option also goes after the command.
    let st = json(&pfs, &["stat", "--json", "/nvme2n1/dir/big9.txt"]);
    assert_eq!(st["size"], 9_437_184);
    let text = pfs.run(&["stat", "/nvme2n1/dir/big9.txt"]);
    let text = String::from_utf8(text.stdout).unwrap();
    let ino = text
        .split("inode: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert_eq!(st["ino"].as_u64().unwrap().to_string(), ino);
    assert!(st["mtime"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(st["pbd"], "nvme2n1");

    let tree = json(&pfs, &["--json", "tree", "/nvme2n1/"]);
    let text = pfs.run(&["tree", "/nvme2n1/"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(
        text.lines().last().unwrap(),
        format!(
            "{} directories, {} files",
            tree["directories"], tree["files"]
        )
    );
    let dir_node = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "dir")
        .unwrap();
    assert!(dir_node["children"].as_array().unwrap().len() >= 3);

    let du = json(&pfs, &["--json", "du", "/nvme2n1/"]);
    let text = pfs.run(&["du", "/nvme2n1/"]);
    let text = String::from_utf8(text.stdout).unwrap();
    let entries = du["entries"].as_array().unwrap();
    assert_eq!(entries.len(), text.lines().count());
    for (e, line) in entries.iter().zip(text.lines()) {
        let (kib, path) = line.split_once('\t').unwrap();
        assert_eq!(e["kib"].as_u64().unwrap().to_string(), kib);
        assert_eq!(e["path"], path);
    }

    let info = json(&pfs, &["--json", "info", "nvme2n1"]);
    assert_eq!(info["nchunk"], 3);
    assert_eq!(info["blktag"]["total"], 3 * 2560);
    let used = info["blktag"]["used"].as_u64().unwrap();
    assert_eq!(info["blktag"]["free"].as_u64().unwrap() + used, 3 * 2560);

    let ui = json(&pfs, &["--json", "usedinfo", "-t", "b", "nvme2n1"]);
    let n: usize = ui["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["used"].as_array().unwrap().len())
        .sum();
    assert_eq!(n as u64, used);
    assert_eq!(ui["chunks"][0]["used"][0], 0);

    let fsck = json(&pfs, &["--json", "fsck", "nvme2n1"]);
    assert_eq!(fsck["clean"], true);
    assert_eq!(fsck["problems"].as_array().unwrap().len(), 0);

    // Commands without a JSON form refuse the option.
    pfs.fail(&["--json", "dumpfs", "nvme2n1"]);
}
