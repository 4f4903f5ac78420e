//! Splitting Anthropic HH-RLHF transcripts into the shared prompt and the two final responses.

/// The marker that opens an assistant turn in HH-RLHF transcripts.
pub const ASSISTANT: &str = "\n\nAssistant:";

/// An HH pair split at its last Assistant turn. The prompt ends with `\n\nAssistant:`; the
/// responses are the verbatim remainders (they usually start with a space), so
/// `prompt + chosen` is exactly the original chosen transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitTranscripts {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// Why a pair of transcripts cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsplittable {
    #[error("the {0} transcript has no `\\n\\nAssistant:` turn")]
    NoAssistantTurn(&'static str),
    #[error("the transcripts differ before their last Assistant turn (first difference at character {at}; chosen's last turn starts at {chosen_turn}, rejected's at {rejected_turn})")]
    PromptsDiffer {
        at: usize,
        chosen_turn: usize,
        rejected_turn: usize,
    },
    #[error("chosen and rejected transcripts are identical")]
    Identical,
}

/// Splits two transcripts that share everything up to their last Assistant turn.
pub fn split_transcripts(chosen: &str, rejected: &str) -> Result<SplitTranscripts, Unsplittable> {
    if chosen == rejected {
        return Err(Unsplittable::Identical);
    }
    let c = chosen
        .rfind(ASSISTANT)
        .ok_or(Unsplittable::NoAssistantTurn("chosen"))?;
    let r = rejected
        .rfind(ASSISTANT)
        .ok_or(Unsplittable::NoAssistantTurn("rejected"))?;
    if chosen[..c] != rejected[..r] {
        let at = chosen
            .chars()
            .zip(rejected.chars())
            .take_while(|(a, b)| a == b)
            .count();
        return Err(Unsplittable::PromptsDiffer {
            at,
            chosen_turn: chosen[..c].chars().count(),
            rejected_turn: rejected[..r].chars().count(),
        });
    }
    let cut = c + ASSISTANT.len();
    Ok(SplitTranscripts {
        prompt: chosen[..cut].to_string(),
        chosen: chosen[cut..].to_string(),
        rejected: rejected[r + ASSISTANT.len()..].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_turn_split_keeps_everything() {
        let c = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d";
        let r = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: e";
        let s = split_transcripts(c, r).unwrap();
        assert_eq!(
            s.prompt,
            "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:"
        );
        assert_eq!((s.chosen.as_str(), s.rejected.as_str()), (" d", " e"));
    }

    #[test]
    fn reasons() {
        assert_eq!(split_transcripts("x", "x"), Err(Unsplittable::Identical));
        assert_eq!(
            split_transcripts("Human: a", "\n\nAssistant: b"),
            Err(Unsplittable::NoAssistantTurn("chosen"))
        );
        let e = split_transcripts(
            "\n\nHuman: a\n\nAssistant: b",
            "\n\nHuman: z\n\nAssistant: b",
        );
        assert_eq!(
            e,
            Err(Unsplittable::PromptsDiffer {
                at: 9,
                chosen_turn: 10,
                rejected_turn: 10
            })
        );
    }
}
