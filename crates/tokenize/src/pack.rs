//! Packing sequences that share their first tokens into one row (causal decoders).
//!
//! In a causal model a token's state depends only on the tokens before it, so sequences that
//! start with the same tokens (a preference pair's chosen and rejected share the prompt; the n
//! samples of best-of-n share theirs) need that prefix computed once. A packed row holds the
//! common prefix once, then each sequence's own tokens after it:
//!
//! ```text
//! tokens   p0 p1 p2 | c0 c1 | r0 r1 r2
//! branch    0  0  0 |  1  1 |  2  2  2
//! position  0  1  2 |  3  4 |  3  4  5
//! ```
//!
//! A token may attend to the earlier tokens of its group that are in the prefix (branch 0) or
//! in its own branch; positions restart after the prefix, so each sequence sees exactly what it
//! would see alone. The model reads each sequence at its last token ([`Packing::last`]).

use crate::{Batch, Encoded};

/// Where the sequences of a packed [`Batch`] are. `group` and `branch` are `[rows, len]`,
/// like the batch's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    /// The group of sequences each token belongs to (a row may hold several groups; tokens of
    /// different groups never see each other).
    pub group: Vec<u32>,
    /// 0 for a group's shared prefix; `k` for the tokens only its `k`-th sequence has.
    pub branch: Vec<u32>,
    /// Flat index (`row · len + column`) of each sequence's last token, in the order the
    /// sequences were given.
    pub last: Vec<usize>,
}

/// Packs `seqs` by `groups` (indices into `seqs`; each index in exactly one group): each group
/// becomes one row holding the group's longest common prefix once, then each member's tokens
/// after it, in group order. The prefix is cut so that every member keeps at least its last
/// token in its own branch (so a member equal to another, or a prefix of it, still has a state
/// of its own to be read at). Rows are padded on the right to the longest.
///
/// # Panics
/// If an index in `groups` is out of range for `seqs`, or a group is empty.
pub fn pack_shared_prefix(seqs: &[&Encoded], groups: &[Vec<usize>], pad_id: u32) -> Batch {
    let rows: Vec<(usize, usize)> = groups.iter().map(|g| layout(seqs, g)).collect();
    let len = rows.iter().map(|&(_, total)| total).max().unwrap_or(0);
    let n = rows.len();
    let mut batch = Batch::padding(n, len, pad_id);
    let mut group = vec![0; n * len];
    let mut branch = vec![0; n * len];
    let mut last = vec![0; seqs.len()];
    for (r, (&(prefix, _), members)) in rows.iter().zip(groups).enumerate() {
        let mut at = r * len;
        let mut put = |e: &Encoded, from: usize, to: usize, b: u32| {
            let end = at + (to - from);
            batch.ids[at..end].copy_from_slice(&e.ids[from..to]);
            batch.type_ids[at..end].copy_from_slice(&e.type_ids[from..to]);
            batch.attention_mask[at..end].fill(1);
            branch[at..end].fill(b);
            at = end;
            end
        };
        let first = seqs[members[0]];
        put(first, 0, prefix, 0);
        for (k, &i) in members.iter().enumerate() {
            let end = put(seqs[i], prefix, seqs[i].ids.len(), k as u32 + 1);
            last[i] = end.saturating_sub(1);
        }
        group[r * len..(r + 1) * len].fill(r as u32);
    }
    batch.packing = Some(Packing {
        group,
        branch,
        last,
    });
    batch
}

/// Cuts a group into runs worth a row each, in order. The members share `prefix` tokens and
/// member `i` has `rest[i]` tokens after them; a member joins the current row while that costs
/// less than a row of its own, a row of `t` tokens costing `per_token · t + t²`: the work of the
/// linear layers, then attention's, which grows with the row. (A decoder of hidden size `d`
/// does about 24·d² FLOPs per token in its linear layers and 4·d per key in attention:
/// `per_token` = 6·d. Small models, and long rows, pack fewer members.) At most `max_members`
/// share a row.
pub fn packing_runs(
    prefix: usize,
    rest: &[usize],
    per_token: f64,
    max_members: usize,
) -> Vec<Vec<usize>> {
    let cost = |t: usize| per_token * t as f64 + (t as f64).powi(2);
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut row = prefix;
    for (i, &r) in rest.iter().enumerate() {
        let joined = cost(row + r) - cost(row);
        match runs.last_mut() {
            Some(run) if run.len() < max_members.max(1) && joined <= cost(prefix + r) => {
                run.push(i);
                row += r;
            }
            _ => {
                runs.push(vec![i]);
                row = prefix + r;
            }
        }
    }
    runs
}

/// The shared prefix of `members` (indices into `seqs`) as [`pack_shared_prefix`] cuts it.
pub fn shared_prefix_len(seqs: &[&Encoded], members: &[usize]) -> usize {
    layout(seqs, members).0
}

/// The tokens of the row [`pack_shared_prefix`] makes of `members` (indices into `seqs`).
pub fn packed_len(seqs: &[&Encoded], members: &[usize]) -> usize {
    layout(seqs, members).1
}

/// One group's row: (the shared prefix length, the row's tokens).
fn layout(seqs: &[&Encoded], members: &[usize]) -> (usize, usize) {
    let first = &seqs[members[0]].ids;
    let shared = members.iter().map(|&i| common_prefix(first, &seqs[i].ids));
    // Every member keeps at least one token of its own.
    let own = members.iter().map(|&i| seqs[i].ids.len().saturating_sub(1));
    let prefix = shared.chain(own).min().unwrap_or(0);
    let total = prefix
        + members
            .iter()
            .map(|&i| seqs[i].ids.len() - prefix)
            .sum::<usize>();
    (prefix, total)
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Truncation;

    fn enc(ids: &[u32]) -> Encoded {
        Encoded {
            ids: ids.to_vec(),
            type_ids: vec![0; ids.len()],
            truncation: Truncation::default(),
        }
    }

    #[test]
    fn a_pair_shares_its_prompt_and_keeps_its_responses() {
        let (c, r, other) = (enc(&[5, 6, 7, 1, 2]), enc(&[5, 6, 7, 3]), enc(&[9, 8]));
        let seqs = [&c, &other, &r];
        let b = pack_shared_prefix(&seqs, &[vec![0, 2], vec![1]], 0);
        assert_eq!((b.rows, b.len), (2, 6));
        assert_eq!(&b.ids[..6], &[5, 6, 7, 1, 2, 3]);
        assert_eq!(&b.ids[6..], &[9, 8, 0, 0, 0, 0]);
        assert_eq!(b.attention_mask, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
        let p = b.packing.as_ref().unwrap();
        assert_eq!(p.branch, [0, 0, 0, 1, 1, 2, 0, 1, 0, 0, 0, 0]);
        assert_eq!(p.group, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
        // chosen ends at 4, the other sequence at 7, rejected at 5: in input order.
        assert_eq!(p.last, [4, 7, 5]);
        assert_eq!(b.sequences(), 3);
        assert_eq!(packed_len(&seqs, &[0, 2]), 6);
        assert_eq!(shared_prefix_len(&seqs, &[0, 2]), 3);
    }

    #[test]
    fn a_member_joins_a_row_while_that_is_cheaper_than_its_own() {
        // A prefix of 100 and responses of 50: in a wide model (per-token work 6·576) all
        // share a row up to the cap; in a narrow one (6·8) attention soon outweighs the prefix.
        let rest = [50; 6];
        assert_eq!(
            packing_runs(100, &rest, 6.0 * 576.0, 4),
            [vec![0, 1, 2, 3], vec![4, 5]]
        );
        let narrow = packing_runs(100, &rest, 6.0 * 8.0, 16);
        assert!(narrow.len() > 1 && narrow.len() < 6, "{narrow:?}");
        // Joining a row of `row` tokens costs per_token·r + 2·row·r + r²; a row alone
        // per_token·(100 + r) + (100 + r)² = 29,700. With per_token 48 and r 50: the second
        // member (row 150) costs 19,900, the third (row 200) 24,900, the fourth (row 250) 29,900.
        assert_eq!(narrow[0], [0, 1, 2]);
        // Nothing shared: every member alone (joining costs more than the row by itself).
        assert_eq!(packing_runs(0, &[10, 10], 48.0, 8), [vec![0], vec![1]]);
    }

    #[test]
    fn a_sequence_that_is_a_prefix_of_another_keeps_its_last_token() {
        let (a, b) = (enc(&[1, 2, 3]), enc(&[1, 2, 3, 4]));
        let packed = pack_shared_prefix(&[&a, &b, &a], &[vec![0, 1, 2]], 0);
        // The prefix stops one short of the shortest member: [1, 2], then [3], [3, 4], [3].
        assert_eq!(packed.ids, [1, 2, 3, 3, 4, 3]);
        let p = packed.packing.unwrap();
        assert_eq!(p.branch, [0, 0, 1, 2, 2, 3]);
        assert_eq!(p.last, [2, 4, 5]);
    }

    #[test]
    fn sequences_with_nothing_in_common_are_only_concatenated() {
        let (a, b) = (enc(&[1, 2]), enc(&[3]));
        let packed = pack_shared_prefix(&[&a, &b], &[vec![0, 1]], 0);
        assert_eq!(packed.ids, [1, 2, 3]);
        assert_eq!(packed.packing.unwrap().branch, [1, 1, 2]);
    }
}
