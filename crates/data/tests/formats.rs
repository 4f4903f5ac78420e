//! Each layout, each file kind, and each error, on small hand-written files.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

mod common;

use common::{file, gz_file};
use rewardkit_data::{
    load, DataError, DropReason, Format, LoadOptions, Message, Position, RowErrorKind, Text,
};

fn opts() -> LoadOptions {
    LoadOptions::default()
}

fn row_error(e: DataError) -> (u64, RowErrorKind, String) {
    let msg = e.to_string();
    match e {
        DataError::Row(r) => match r.location.position {
            Position::Line(n) => (n, r.kind, msg),
            Position::Row(n) => (n, r.kind, msg),
        },
        other => panic!("expected a row error, got {other}"),
    }
}

#[test]
fn trl_plain_with_optional_fields() {
    let (_d, path) = file(
        "prefs.jsonl",
        concat!(
            r#"{"prompt": "Q1", "chosen": "good", "rejected": "bad", "margin": 2, "subset": "math", "id": 7}"#,
            "\n\n", // a blank line is not a record
            r#"{"chosen": "A", "rejected": "B"}"#,
            "\n"
        ),
    );
    let data = load(&[path], &opts()).unwrap();
    assert_eq!(data.report.rows_read, 2);
    assert_eq!(data.report.files[0].format, Format::Trl);
    let p = &data.pairs[0];
    assert_eq!(p.prompt, Text::Plain("Q1".into()));
    assert_eq!(p.chosen, Text::Plain("good".into()));
    assert_eq!(p.margin, Some(2.0));
    assert_eq!(p.subset.as_deref(), Some("math"));
    assert_eq!(p.id.as_deref(), Some("7"));
    // Without a prompt the prompt is empty; the third line is the second record.
    assert_eq!(data.pairs[1].prompt, Text::Plain(String::new()));
    assert_eq!(data.pairs[1].location.position, Position::Line(3));
}

#[test]
fn trl_conversational_explicit_and_implicit_prompt() {
    let (_d, path) = file(
        "chat.jsonl",
        concat!(
            r#"{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello!"}], "rejected": [{"role": "assistant", "content": "go away"}]}"#,
            "\n",
            r#"{"chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]}"#,
            "\n"
        ),
    );
    let data = load(&[path], &opts()).unwrap();
    let msg = |role: &str, content: &str| Message {
        role: role.into(),
        content: content.into(),
    };
    assert_eq!(data.pairs[0].prompt, Text::Chat(vec![msg("user", "hi")]));
    assert_eq!(
        data.pairs[0].rejected,
        Text::Chat(vec![msg("assistant", "go away")])
    );
    // TRL's implicit prompt: the shared leading messages.
    assert_eq!(data.pairs[1].prompt, Text::Chat(vec![msg("user", "2+2?")]));
    assert_eq!(
        data.pairs[1].chosen,
        Text::Chat(vec![msg("assistant", "4")])
    );
    assert_eq!(
        data.pairs[1].rejected,
        Text::Chat(vec![msg("assistant", "5")])
    );
}

#[test]
fn hh_transcripts_split_at_last_assistant_turn() {
    let chosen = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Weather?\n\nAssistant: Sunny today.";
    let rejected = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Weather?\n\nAssistant: No idea.";
    let line = serde_json::json!({"chosen": chosen, "rejected": rejected}).to_string();
    let (_d, path) = file("hh.jsonl", &line);
    let data = load(&[path], &opts()).unwrap();
    assert_eq!(data.report.files[0].format, Format::Hh);
    let p = &data.pairs[0];
    let Text::Plain(prompt) = &p.prompt else {
        panic!()
    };
    assert!(prompt.ends_with("Weather?\n\nAssistant:"));
    assert_eq!(p.chosen, Text::Plain(" Sunny today.".into()));
    assert_eq!(p.rejected, Text::Plain(" No idea.".into()));
    // Nothing is lost: prompt + response is the original transcript.
    assert_eq!(format!("{prompt} Sunny today."), chosen);
}

#[test]
fn hh_unsplittable_and_identical_rows_are_dropped_with_reasons() {
    let rows = [
        serde_json::json!({"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"}),
        serde_json::json!({"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: A\n\nAssistant: x"}),
        serde_json::json!({"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "no turns at all"}),
        serde_json::json!({"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: A\n\nAssistant: z"}),
    ];
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    let (_d, path) = file("hh.jsonl", &text);
    let data = load(&[path], &opts()).unwrap();
    let r = &data.report;
    assert_eq!((r.rows_read, r.pairs), (4, 1));
    assert_eq!(r.dropped[&DropReason::Unsplittable], 2);
    assert_eq!(r.dropped[&DropReason::NoPreference], 1);
    let lines: Vec<_> = r.dropped_rows.iter().map(|d| d.location.position).collect();
    assert_eq!(
        lines,
        [Position::Line(1), Position::Line(2), Position::Line(3)]
    );
    assert!(r.dropped_rows[0]
        .detail
        .contains("differ before their last Assistant turn"));
    assert!(r.dropped_rows[2]
        .detail
        .contains("rejected transcript has no"));
}

#[test]
fn soft_labels_from_p_chosen_or_a_named_field() {
    let (_d, path) = file(
        "soft.jsonl",
        concat!(
            r#"{"prompt": "Q", "chosen": "a", "rejected": "b", "p_chosen": 0.8}"#,
            "\n",
            r#"{"prompt": "Q", "chosen": "c", "rejected": "d", "p_chosen": null}"#,
            "\n",
            r#"{"prompt": "Q", "chosen": "e", "rejected": "f", "p_chosen": 0.25}"#,
            "\n",
            r#"{"prompt": "Q", "chosen": "g", "rejected": "h", "p_chosen": 0.5}"#,
            "\n",
            r#"{"prompt": "Q", "chosen": "i", "rejected": "j"}"#,
            "\n",
        ),
    );
    let data = load(std::slice::from_ref(&path), &opts()).unwrap();
    let p = &data.pairs;
    assert_eq!((p[0].p_chosen, p[0].target()), (Some(0.8), 0.8));
    // null, or no field: a hard label.
    assert_eq!((p[1].p_chosen, p[1].target()), (None, 1.0));
    assert_eq!((p[4].p_chosen, p[4].target()), (None, 1.0));
    // Below one half: chosen names the favoured response, with a note on its line.
    assert_eq!(
        (p[2].chosen.render(), p[2].rejected.render(), p[2].p_chosen),
        ("f".into(), "e".into(), Some(0.75))
    );
    assert_eq!(data.report.notes.len(), 1);
    assert_eq!(
        data.report.notes[0].location.to_string(),
        format!("{}:3", path.display())
    );
    // Exactly one half is a tie.
    assert!(p[3].tie && p[3].target() == 0.5);
    assert_eq!((data.report.soft_labels, data.report.ties), (2, 1));
    // Written back, the label keeps its field.
    let line = serde_json::to_value(&p[0]).unwrap();
    assert_eq!(line["p_chosen"], 0.8);

    // A named field must be in every record.
    let named = LoadOptions {
        label_field: Some("pref".into()),
        ..opts()
    };
    let (_d2, path) = file(
        "named.jsonl",
        concat!(
            r#"{"chosen": "a", "rejected": "b", "pref": 0.9, "p_chosen": 0.6}"#,
            "\n",
            r#"{"chosen": "c", "rejected": "d", "p_chosen": 0.6}"#,
            "\n",
        ),
    );
    let (line, kind, msg) = row_error(load(&[path], &named).unwrap_err());
    assert_eq!(line, 2);
    assert!(matches!(kind, RowErrorKind::InvalidValue { ref field, .. } if field == "pref"));
    assert!(msg.contains("missing"), "{msg}");
}

#[test]
fn bad_soft_labels_name_their_line() {
    for (value, expected) in [
        ("1.5", "must be in [0, 1], found 1.5"),
        ("-0.1", "must be in [0, 1], found -0.1"),
        (
            "\"high\"",
            "should be a probability in [0, 1], found a string",
        ),
    ] {
        let (_d, path) = file(
            "bad.jsonl",
            &format!(
                "{}\n{{\"chosen\": \"a\", \"rejected\": \"b\", \"p_chosen\": {value}}}\n",
                r#"{"chosen": "x", "rejected": "y"}"#
            ),
        );
        let (line, _, msg) = row_error(load(&[path], &opts()).unwrap_err());
        assert_eq!(line, 2, "{msg}");
        assert!(
            msg.contains("`p_chosen`") && msg.contains(expected),
            "{msg}"
        );
    }
    // A tie with another probability contradicts itself.
    let (_d, path) = file(
        "tie.jsonl",
        r#"{"chosen": "a", "rejected": "b", "tie": true, "p_chosen": 0.9}"#,
    );
    let (_, _, msg) = row_error(load(&[path], &opts()).unwrap_err());
    assert!(msg.contains("labelled a tie"), "{msg}");
}

#[test]
fn pairwise_majority_vote_ties_and_lenient_scalars() {
    let rows = serde_json::json!([
        {"idx": 1, "instruction": "Add", "input": "2+2", "response1": "4", "response2": "5", "annotator1": 1, "annotator2": 1, "annotator3": 2},
        {"idx": 2, "instruction": "Add", "input": "", "response1": "4", "response2": "5", "annotator1": 2, "annotator2": 0, "annotator3": 2},
        {"idx": 3, "instruction": "Say", "input": "", "response1": "a", "response2": "b", "annotator1": 0, "annotator2": 0, "annotator3": 1},
        {"idx": 4, "instruction": "Say", "input": "", "response1": "c", "response2": "d", "annotator1": 0, "annotator2": 1, "annotator3": 2},
        {"idx": 5, "instruction": "True?", "input": "", "response1": true, "response2": "yes", "label": 1}
    ]);
    let (_d, path) = file(
        "pandalm.json",
        &serde_json::to_string_pretty(&rows).unwrap(),
    );
    let data = load(&[path], &opts()).unwrap();
    assert_eq!(data.report.files[0].format, Format::Pairwise);
    let p = &data.pairs;
    assert_eq!(p[0].prompt, Text::Plain("Add\n\n2+2".into()));
    assert_eq!((p[0].chosen.render(), p[0].tie), ("4".into(), false));
    // Votes 2, 0, 2: response2 wins; the prompt has no empty input appended.
    assert_eq!(p[1].prompt, Text::Plain("Add".into()));
    assert_eq!(
        (p[1].chosen.render(), p[1].rejected.render()),
        ("5".into(), "4".into())
    );
    // Majority for 0 → tie; no majority (0, 1, 2) → tie as well.
    assert!(p[2].tie && p[3].tie);
    assert_eq!(data.report.ties, 2);
    // A JSON `true` response is read as the text `true`, with a note naming its line.
    assert_eq!(p[4].chosen, Text::Plain("true".into()));
    assert_eq!(data.report.notes.len(), 1);
    assert!(data.report.notes[0].note.contains("response1"));
    // JSON array elements are located by the line they start on.
    assert_eq!(p[0].location.position, Position::Line(2));
    assert_eq!(p[1].location.position, Position::Line(12));
    assert_eq!(p[0].id.as_deref(), Some("1"));
}

#[test]
fn broken_third_line_names_file_and_line() {
    let (_d, path) = file(
        "broken.jsonl",
        concat!(
            r#"{"prompt": "a", "chosen": "b", "rejected": "c"}"#,
            "\n",
            r#"{"prompt": "a", "chosen": "d", "rejected": "c"}"#,
            "\n",
            r#"{"prompt": "a", "chosen": "b", "rejected": "#,
            "\n",
        ),
    );
    let err = load(&[&path], &opts()).unwrap_err();
    let (line, kind, msg) = row_error(err);
    assert_eq!(line, 3);
    assert!(matches!(kind, RowErrorKind::InvalidJson(_)));
    assert!(
        msg.starts_with(&format!("{}:3: invalid JSON", path.display())),
        "{msg}"
    );
}

#[test]
fn each_field_error_is_named() {
    let cases = [
        (r#"{"prompt": "a", "rejected": "c"}"#, "missing field `chosen`"),
        (
            r#"{"prompt": "a", "chosen": 5, "rejected": "c"}"#,
            "field `chosen` should be a string or a list of {role, content} messages, found a number",
        ),
        (
            r#"{"prompt": "a", "chosen": "b", "rejected": "c", "margin": "big"}"#,
            "field `margin` should be a number, found a string",
        ),
        (
            r#"{"prompt": "a", "chosen": "b", "rejected": "c", "subset": 3}"#,
            "field `subset` should be a string, found a number",
        ),
        (
            r#"{"prompt": "a", "chosen": [{"role": "assistant"}], "rejected": [{"role": "assistant", "content": "x"}]}"#,
            "missing field `chosen[0].content`",
        ),
        (
            r#"{"prompt": "a", "chosen": "b", "rejected": [{"role": "assistant", "content": "x"}]}"#,
            "chosen and rejected must both be strings or both message lists",
        ),
        (r#"[1, 2]"#, "expected a JSON object, found an array"),
    ];
    for (line, expected) in cases {
        // The first line fixes the format; the second is the case.
        let text = format!(
            "{}\n{line}\n",
            r#"{"prompt": "p", "chosen": "x", "rejected": "y"}"#
        );
        let (_d, path) = file("case.jsonl", &text);
        let (n, _, msg) = row_error(load(&[path], &opts()).unwrap_err());
        assert_eq!(n, 2, "{line}");
        assert!(
            msg.ends_with(expected),
            "{line}: got `{msg}`, expected `…{expected}`"
        );
    }
    // A pairwise vote outside {0, 1, 2}.
    let (_d, path) = file(
        "votes.jsonl",
        r#"{"instruction": "i", "response1": "a", "response2": "b", "annotator1": 3}"#,
    );
    let (_, _, msg) = row_error(load(&[path], &opts()).unwrap_err());
    assert!(
        msg.ends_with("field `annotator1`: expected 0 (tie), 1 or 2, found 3"),
        "{msg}"
    );
}

#[test]
fn skip_invalid_counts_and_lists_and_totals_add_up() {
    let text = concat!(
        r#"{"prompt": "a", "chosen": "b", "rejected": "c"}"#,
        "\nnot json\n",
        r#"{"prompt": "a", "chosen": "b"}"#,
        "\n",
        r#"{"prompt": "a", "chosen": "b", "rejected": "c"}"#,
        "\n",
        r#"{"prompt": "a", "chosen": "same", "rejected": "same"}"#,
        "\n",
        r#"{"prompt": "z", "chosen": "b", "rejected": "c"}"#,
        "\n",
    );
    let (_d, path) = file("mixed.jsonl", text);
    let options = LoadOptions {
        skip_invalid: true,
        ..opts()
    };
    let data = load(&[path], &options).unwrap();
    let r = &data.report;
    assert_eq!(r.rows_read, 6);
    assert_eq!(r.pairs, 2);
    assert_eq!(r.dropped[&DropReason::Invalid], 2);
    assert_eq!(r.dropped[&DropReason::Duplicate], 1);
    assert_eq!(r.dropped[&DropReason::NoPreference], 1);
    assert_eq!(r.rows_read, r.pairs + r.dropped_total());
    let invalid: Vec<_> = r
        .dropped_rows
        .iter()
        .filter(|d| d.reason == DropReason::Invalid)
        .map(|d| (d.location.position, d.detail.as_str()))
        .collect();
    assert_eq!(invalid[0].0, Position::Line(2));
    assert_eq!(invalid[1], (Position::Line(3), "missing field `rejected`"));
    // Duplicates can be kept on request.
    let keep = LoadOptions {
        keep_duplicates: true,
        ..options
    };
    let (_d2, path) = file("mixed.jsonl", text);
    assert_eq!(load(&[path], &keep).unwrap().report.pairs, 3);
}

#[test]
fn gzip_json_array_and_leading_blank_lines() {
    let body = "\n\n{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \n";
    let (_d, path) = gz_file("x.jsonl.gz", body);
    let (line, _, msg) = row_error(load(&[path], &opts()).unwrap_err());
    assert_eq!(line, 4, "{msg}");
    // A JSON array that does not parse names the line of the fault.
    let (_d, path) = file(
        "bad.json",
        "[\n {\"chosen\": \"a\", \"rejected\": \"b\"},\n {\"chosen\": }\n]",
    );
    let msg = load(&[&path], &opts()).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}:3: invalid JSON", path.display())),
        "{msg}"
    );
}

#[test]
fn unknown_layout_and_empty_file_are_errors() {
    let (_d, path) = file("other.jsonl", r#"{"question": "q", "answer": "a"}"#);
    let msg = load(&[path], &opts()).unwrap_err().to_string();
    assert!(
        msg.contains("cannot tell the data format") && msg.contains("answer, question"),
        "{msg}"
    );
    let (_d, path) = file("empty.jsonl", "\n\n");
    assert!(matches!(
        load(&[path], &opts()),
        Err(DataError::Empty { .. })
    ));
    let missing = std::path::PathBuf::from("/nonexistent/file.jsonl");
    assert!(matches!(
        load(&[missing], &opts()),
        Err(DataError::Io { .. })
    ));
}

#[test]
fn forced_format_overrides_detection() {
    // Looks like HH, but the user says TRL: the transcripts are taken whole as responses.
    let line = serde_json::json!({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"});
    let (_d, path) = file("x.jsonl", &line.to_string());
    let options = LoadOptions {
        format: Some(Format::Trl),
        ..opts()
    };
    let data = load(&[path], &options).unwrap();
    assert_eq!(data.pairs[0].prompt, Text::Plain(String::new()));
    assert_eq!(
        data.pairs[0].chosen.render(),
        "\n\nHuman: a\n\nAssistant: b"
    );
    assert_eq!("pairwise".parse::<Format>(), Ok(Format::Pairwise));
    assert!("csv".parse::<Format>().is_err());
}

#[test]
fn subsets_from_file_names() {
    let (_d, path) = file(
        "test.jsonl",
        r#"{"prompt": "p", "chosen": "a", "rejected": "b"}"#,
    );
    let options = LoadOptions {
        subset_from_file: true,
        ..opts()
    };
    let data = load(&[&path], &options).unwrap();
    let parent = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy();
    assert_eq!(
        data.pairs[0].subset.as_deref(),
        Some(format!("{parent}/test").as_str())
    );
    assert_eq!(
        rewardkit_data::subset_name("data/helpful-base/test.jsonl.gz".as_ref()),
        "helpful-base/test"
    );
    assert_eq!(
        rewardkit_data::subset_name("x/my-prefs.jsonl".as_ref()),
        "my-prefs"
    );
}
