//! Shared by the targets: the readers take paths (they open files and `-` themselves), so each
//! input is written to a file in memory-backed temporary storage first.

use std::path::PathBuf;
use std::sync::OnceLock;

use rewardkit_data::{load, Dataset, LoadOptions};

/// A file of this process for the current input, under /dev/shm when there is one.
pub fn input_file(bytes: &[u8], name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("rewardkit-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary folder");
        dir
    });
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write input");
    path
}

/// Loads `bytes` as a preference file and checks the account: rows read = pairs + dropped.
pub fn load_checked(bytes: &[u8], name: &str, options: &LoadOptions) -> Option<Dataset> {
    let path = input_file(bytes, name);
    let data = load(&[&path], options).ok()?;
    let r = &data.report;
    assert_eq!(r.rows_read, r.pairs + r.dropped_total(), "{r:?}");
    assert_eq!(r.pairs as usize, data.pairs.len());
    assert_eq!(r.dropped_rows.len() as u64, r.dropped_total());
    // A soft label is oriented on reading: chosen is the favoured response.
    assert!(data.pairs.iter().all(|p| (0.5..=1.0).contains(&p.target())));
    Some(data)
}

/// Options picked by the first byte: the forced format, whether to skip invalid rows, keep
/// duplicates, name subsets after the file, and read soft labels from a named field (`p`).
pub fn options(selector: u8, formats: &[Option<rewardkit_data::Format>]) -> LoadOptions {
    LoadOptions {
        format: formats[selector as usize % formats.len()],
        skip_invalid: selector & 0x80 != 0,
        keep_duplicates: selector & 0x40 != 0,
        subset_from_file: selector & 0x20 != 0,
        label_field: (selector & 0x10 != 0).then(|| "p".to_string()),
    }
}
