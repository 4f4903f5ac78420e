//! Two audits side by side, for people: `rewardkit audit --compare A B`'s table.

use std::fmt::Write;

use rewardkit_audit::compare::{key, Change, ComparedCheck, Comparison, Side};
use rewardkit_audit::run::{Flag, Severity};

use crate::audit::fmt_p;
use crate::goodhart::md_table;
use crate::tables::new_table;

/// Columns of the comparison table.
pub const COMPARE_HEADER: [&str; 8] = [
    "check",
    "measure",
    "A",
    "B",
    "B − A [95% CI]",
    "p",
    "change",
    "flag A → B",
];

fn flag_cell(s: &Side) -> &'static str {
    match (s.flag, s.watch) {
        (Some(Severity::Red), _) => "red",
        (Some(Severity::Warning), _) => "warning",
        (None, true) => "watch",
        (None, false) => "–",
    }
}

fn change_cell(c: Change) -> &'static str {
    match c {
        Change::Better => "better",
        Change::Worse => "WORSE",
        Change::Unchanged => "–",
    }
}

/// One row per compared check.
pub fn compare_rows(rows: &[ComparedCheck]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            vec![
                key(r.check, &r.subject),
                r.measure.clone(),
                format!("{:.3}", r.a.value),
                format!("{:.3}", r.b.value),
                format!("{:+.3} [{:+.3}, {:+.3}]", r.difference, r.ci[0], r.ci[1]),
                fmt_p(r.p_value),
                change_cell(r.change).into(),
                format!("{} → {}", flag_cell(&r.a), flag_cell(&r.b)),
            ]
        })
        .collect()
}

fn flag_list(s: &mut String, title: &str, flags: &[Flag]) {
    if flags.is_empty() {
        return;
    }
    let names: Vec<String> = flags.iter().map(|f| key(f.check, &f.subject)).collect();
    let _ = writeln!(s, "{title}: {}", names.join(", "));
}

fn summary(c: &Comparison) -> String {
    let mut s = String::new();
    let count = |ch: Change| c.rows.iter().filter(|r| r.change == ch).count();
    let _ = writeln!(
        s,
        "{} checks compared: {} better, {} worse, {} without a significant change (Holm at {:.0}% over the comparison; intervals of B − A are 95%, conservative when both audits share their items).",
        c.rows.len(),
        count(Change::Better),
        count(Change::Worse),
        count(Change::Unchanged),
        100.0 * c.alpha
    );
    flag_list(&mut s, "Flags fixed", &c.fixed);
    flag_list(&mut s, "Flags new", &c.new);
    for n in &c.notes {
        let _ = writeln!(s, "Note: {n}");
    }
    s
}

/// The terminal summary: who A and B are, the table, then what was fixed and what is new.
pub fn compare_text(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "A: {} ({}, {} pairs, {} flags)\nB: {} ({}, {} pairs, {} flags)",
        c.a.label, c.a.scorer, c.a.pairs, c.a.flags, c.b.label, c.b.scorer, c.b.pairs, c.b.flags
    );
    let mut t = new_table(&COMPARE_HEADER);
    for row in compare_rows(&c.rows) {
        t.add_row(row);
    }
    let _ = writeln!(s, "{t}");
    s.push_str(&summary(c));
    s
}

/// The same as Markdown, for `comparison.md` and the docs.
pub fn compare_markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Audit comparison: {} → {}\n", c.a.label, c.b.label);
    md_table(&mut s, &COMPARE_HEADER, &compare_rows(&c.rows));
    for line in summary(c).lines() {
        let _ = writeln!(s, "{line}\n");
    }
    s
}
