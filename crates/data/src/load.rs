//! Loading preference files into a [`Dataset`], with an account of every row read.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;

use serde::Serialize;

use crate::error::{DataError, RowError};
use crate::format::{parse_record, DropReason, Format, Parsed};
use crate::records::for_each_record;
use crate::types::{Location, PreferencePair};

/// How to read preference files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The layout of every file; `None` recognises it per file from its first record.
    pub format: Option<Format>,
    /// Count and list malformed records instead of failing on the first one.
    pub skip_invalid: bool,
    /// Keep exact duplicates (by default the second and later copies are dropped).
    pub keep_duplicates: bool,
    /// Give pairs without a `subset` field the name of their file (`helpful-base/test` for
    /// `helpful-base/test.jsonl.gz`), for per-file metrics.
    pub subset_from_file: bool,
    /// The field holding each record's soft label, the probability that `chosen` is better
    /// (every record must have it; `null` there is a hard label). `None`: read
    /// [`DEFAULT_LABEL_FIELD`](crate::DEFAULT_LABEL_FIELD) where a record has it.
    pub label_field: Option<String>,
}

/// A row that was read but did not become a pair, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DroppedRow {
    pub location: Location,
    pub reason: DropReason,
    pub detail: String,
}

/// A value that was read leniently, and where.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowNote {
    pub location: Location,
    pub note: String,
}

/// What was read from one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    pub path: String,
    pub format: Format,
    pub rows: u64,
    pub pairs: u64,
}

/// The account of a load: `rows_read == pairs + Σ dropped`, always.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    pub files: Vec<FileReport>,
    pub rows_read: u64,
    pub pairs: u64,
    /// Kept pairs labelled as ties (included in `pairs`).
    pub ties: u64,
    /// Rows labelled as ties before de-duplication (ties among all well-formed rows).
    pub tie_rows: u64,
    /// Kept pairs with a soft label strictly between ½ and 1 (ties not included).
    pub soft_labels: u64,
    pub dropped: BTreeMap<DropReason, u64>,
    /// Every dropped row with its location and reason.
    pub dropped_rows: Vec<DroppedRow>,
    /// Values read leniently (kept, but not as the format prescribes).
    pub notes: Vec<RowNote>,
}

impl LoadReport {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    fn drop_row(&mut self, location: Location, reason: DropReason, detail: String) {
        *self.dropped.entry(reason).or_default() += 1;
        self.dropped_rows.push(DroppedRow {
            location,
            reason,
            detail,
        });
    }
}

/// Preference pairs and the account of how they were read.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub pairs: Vec<PreferencePair>,
    pub report: LoadReport,
}

/// Reads every file, in order, into one dataset.
pub fn load<P: AsRef<Path>>(paths: &[P], options: &LoadOptions) -> Result<Dataset, DataError> {
    let mut dataset = Dataset::default();
    let mut seen = HashSet::new();
    for path in paths {
        load_file(path.as_ref(), options, &mut seen, &mut dataset)?;
    }
    Ok(dataset)
}

fn load_file(
    path: &Path,
    options: &LoadOptions,
    seen: &mut HashSet<(u64, u64)>,
    dataset: &mut Dataset,
) -> Result<(), DataError> {
    let mut format = options.format;
    let mut rows = 0u64;
    let pairs_before = dataset.report.pairs;
    let file_subset = options.subset_from_file.then(|| subset_name(path));
    let report = &mut dataset.report;
    let pairs = &mut dataset.pairs;
    for_each_record(path, |record| -> Result<(), DataError> {
        rows += 1;
        report.rows_read += 1;
        let (location, obj) = match record.into_result() {
            Ok(ok) => ok,
            Err(e) => return skip_or_fail(report, e, options.skip_invalid),
        };
        let fmt = match format {
            Some(f) => f,
            None => {
                let f = Format::detect(&obj).map_err(|reason| DataError::UnknownFormat {
                    path: path.to_path_buf(),
                    reason,
                })?;
                *format.insert(f)
            }
        };
        let mut notes = Vec::new();
        let label_field = options.label_field.as_deref();
        let parsed = parse_record(fmt, location.clone(), &obj, label_field, &mut notes);
        report.notes.extend(notes.into_iter().map(|note| RowNote {
            location: location.clone(),
            note,
        }));
        let parsed = match parsed {
            Ok(p) => p,
            Err(kind) => {
                return skip_or_fail(report, RowError { location, kind }, options.skip_invalid)
            }
        };
        match parsed {
            Parsed::Dropped(reason, detail) => report.drop_row(location, reason, detail),
            Parsed::Pair(mut pair) => {
                report.tie_rows += u64::from(pair.tie);
                if !options.keep_duplicates && !seen.insert(pair_key(&pair)) {
                    let detail =
                        "same prompt, chosen, rejected and label as an earlier pair".to_string();
                    report.drop_row(location, DropReason::Duplicate, detail);
                    return Ok(());
                }
                if pair.subset.is_none() {
                    pair.subset.clone_from(&file_subset);
                }
                report.pairs += 1;
                report.ties += u64::from(pair.tie);
                report.soft_labels += u64::from(!pair.tie && pair.target() < 1.0);
                pairs.push(*pair);
            }
        }
        Ok(())
    })?;
    if rows == 0 {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let pairs = dataset.report.pairs - pairs_before;
    dataset.report.files.push(FileReport {
        path: path.display().to_string(),
        // A file whose every record was malformed (with skip_invalid) has no recognised format.
        format: format.unwrap_or(Format::Trl),
        rows,
        pairs,
    });
    Ok(())
}

fn skip_or_fail(report: &mut LoadReport, e: RowError, skip: bool) -> Result<(), DataError> {
    if !skip {
        return Err(e.into());
    }
    report.drop_row(e.location, DropReason::Invalid, e.kind.to_string());
    Ok(())
}

/// A 128-bit key of the pair's content, for exact de-duplication.
fn pair_key(pair: &PreferencePair) -> (u64, u64) {
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        pair.prompt.hash(&mut h);
        pair.chosen.hash(&mut h);
        pair.rejected.hash(&mut h);
        pair.tie.hash(&mut h);
        pair.p_chosen.map(f64::to_bits).hash(&mut h);
        h.finish()
    };
    (half(1), half(2))
}

/// `helpful-base/test` for `…/helpful-base/test.jsonl.gz`; `train` alone is too generic.
pub fn subset_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.split('.').next().unwrap_or(&name).to_string();
    const GENERIC: [&str; 6] = ["train", "test", "eval", "validation", "dev", "data"];
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    match parent {
        Some(parent) if GENERIC.contains(&stem.as_str()) => format!("{parent}/{stem}"),
        _ => stem,
    }
}
