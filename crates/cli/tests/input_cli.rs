//! Reading input as a user feeds it: pipes, `-`, `/dev/stdin`, gzip through a pipe, damaged
//! files, and the exit codes the README documents (2 bad command line, 3 bad input data).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rewardkit"))
}

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run rewardkit")
}

/// Runs rewardkit with `input` written into its standard input through a pipe.
fn run_piped(args: &[&str], input: &[u8]) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rewardkit");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written from a thread in small pieces, so the reader sees a real pipe filling slowly.
    let writer = std::thread::spawn(move || {
        for chunk in input.chunks(1000) {
            if stdin.write_all(chunk).is_err() {
                break;
            }
        }
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stats_json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

#[test]
fn a_pipe_is_read_whole_with_dash_and_dev_stdin_plain_and_gzip() {
    let gz_path = shared("hh-rlhf/helpful-base/test.jsonl.gz");
    let plain = gunzip(&gz_path);
    let gz = std::fs::read(&gz_path).unwrap();
    let expected = lines(&plain);
    assert_eq!(expected, 2354);
    for (input, what) in [(&plain, "plain"), (&gz, "gzip")] {
        for name in ["-", "/dev/stdin"] {
            let v = stats_json(&run_piped(&["data", "stats", name, "--json"], input));
            assert_eq!(v["rows_read"], expected, "{what} through {name}");
            let dropped: u64 = v["dropped"]
                .as_object()
                .unwrap()
                .values()
                .map(|n| n.as_u64().unwrap())
                .sum();
            assert_eq!(v["pairs"].as_u64().unwrap() + dropped, expected);
            assert_eq!(v["pick_longer"]["chosen_longer"], 1394, "{what} {name}");
        }
    }
}

#[test]
fn eval_scores_from_a_pipe() {
    let scores = b"{\"chosen_score\": 2, \"rejected_score\": 1}\n{\"chosen_score\": 0, \"rejected_score\": 1}\n{\"chosen_score\": 3, \"rejected_score\": 1}\n";
    let o = run_piped(&["eval", "--scores", "-", "--json"], scores);
    let v = stats_json(&o);
    assert_eq!(v["overall"]["accuracy"]["correct"], 2, "{v}");
    assert_eq!(v["overall"]["accuracy"]["n"], 3);
}

#[test]
fn a_bad_line_read_from_stdin_is_named_stdin() {
    let o = run_piped(
        &["data", "stats", "-"],
        b"{\"chosen\": \"a\", \"rejected\": \"b\"}\n{\"chosen\": NaN}\n",
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("<stdin>:2: invalid JSON: NaN is not valid JSON"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_truncated_gzip_is_bad_input_naming_the_file() {
    let gz = std::fs::read(shared("hh-rlhf/helpful-base/test.jsonl.gz")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.jsonl.gz");
    std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
    let o = run(&["data", "stats", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}: damaged or truncated", path.display())),
        "{err}"
    );
}

#[test]
fn duplicate_keys_bom_and_overflowing_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let dup = dir.path().join("dup.jsonl");
    std::fs::write(
        &dup,
        "{\"chosen\": \"a\", \"rejected\": \"b\"}\n{\"chosen\": \"a\", \"rejected\": \"b\", \"chosen\": \"c\"}\n",
    )
    .unwrap();
    let o = run(&["data", "stats", dup.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{}:2: invalid JSON: duplicate key `chosen`",
            dup.display()
        )),
        "{}",
        stderr(&o)
    );

    let bom = dir.path().join("bom.jsonl");
    std::fs::write(&bom, "\u{feff}{\"chosen\": \"a\", \"rejected\": \"b\"}\n").unwrap();
    let v = stats_json(&run(&["data", "stats", bom.to_str().unwrap(), "--json"]));
    assert_eq!(v["pairs"], 1);

    let huge = dir.path().join("huge.jsonl");
    std::fs::write(
        &huge,
        "{\"chosen_score\": 1, \"rejected_score\": 0}\n{\"chosen_score\": 1e308, \"rejected_score\": -1e308}\n",
    )
    .unwrap();
    let o = run(&["eval", "--scores", huge.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{}:2: field `rejected_score`", huge.display()))
            && stderr(&o).contains("overflows"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_os_error_is_printed_once() {
    let o = run(&["data", "stats", "/nonexistent/prefs.jsonl"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_eq!(err.matches("/nonexistent/prefs.jsonl").count(), 1, "{err}");
    let o = run(&["eval", "--scores", "/nonexistent/s.jsonl"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).matches("No such file").count(),
        1,
        "{}",
        stderr(&o)
    );
}

#[test]
fn out_of_range_flags_are_a_bad_command_line() {
    let data = shared("hh-rlhf/helpful-base/test.jsonl.gz");
    let data = data.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.jsonl");
    let e = dir.path().join("e.jsonl");
    let (t, e) = (t.to_str().unwrap(), e.to_str().unwrap());
    let split = |fraction: &str| {
        let flag = format!("--eval-fraction={fraction}");
        run(&[
            "data",
            "split",
            data,
            &flag,
            "--train-out",
            t,
            "--eval-out",
            e,
        ])
    };
    for bad in ["1.5", "-0.1", "NaN"] {
        let o = split(bad);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("--eval-fraction"), "{}", stderr(&o));
    }
    assert!(
        !Path::new(t).exists(),
        "nothing written on a bad command line"
    );
    let cases: [&[&str]; 5] = [
        &[
            "eval",
            "--baseline",
            "length",
            "--data",
            data,
            "--batch-size",
            "0",
        ],
        &[
            "eval",
            "--baseline",
            "length",
            "--data",
            data,
            "--max-length",
            "0",
        ],
        &["data", "stats", data, "--max-length", "0"],
        &["data", "cycles", data, "--iterations", "0"],
        &[
            "audit",
            "--baseline",
            "length",
            "--data",
            data,
            "--out",
            t,
            "--bootstrap",
            "10",
        ],
    ];
    for args in cases {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}
