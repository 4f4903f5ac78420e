//! Packing sequences into rows: several to a row with no padding between them, and for causal
//! decoders those that share their first tokens with that prefix computed once.
//!
//! In a causal model a token's state depends only on the tokens before it, so sequences that
//! start with the same tokens (a preference pair's chosen and rejected share the prompt; the n
//! samples of best-of-n share theirs) need that prefix computed once. A packed group holds the
//! common prefix once, then each sequence's own tokens after it:
//!
//! ```text
//! tokens   p0 p1 p2 | c0 c1 | r0 r1 r2 | s0 s1
//! group     0  0  0 |  0  0 |  0  0  0 |  1  1
//! branch    0  0  0 |  1  1 |  2  2  2 |  1  1
//! position  0  1  2 |  3  4 |  3  4  5 |  0  1
//! ```
//!
//! A token may attend to the earlier tokens of its group that are in the prefix (branch 0) or
//! in its own branch; positions restart after the prefix, so each sequence sees exactly what it
//! would see alone. Groups share a row without seeing each other (the block-diagonal mask of
//! packing without padding: [`pack`] with `share_prefix` off, which encoders need, gives each
//! sequence a group of its own). The model reads each sequence at its first token
//! ([`Packing::first`]) or its last ([`Packing::last`]).

use crate::{Batch, Encoded};

/// Where the sequences of a packed [`Batch`] are. `group` and `branch` are `[rows, len]`,
/// like the batch's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    /// The group of sequences each token belongs to (a row may hold several groups; tokens of
    /// different groups never see each other). Groups are numbered through the whole batch; a
    /// row's padding is a group of its own.
    pub group: Vec<u32>,
    /// 0 for a group's shared prefix; `k` for the tokens only its `k`-th sequence has.
    pub branch: Vec<u32>,
    /// Flat index (`row · len + column`) of each sequence's first token (its group's first,
    /// where the group shares a prefix), in the order the sequences were given.
    pub first: Vec<usize>,
    /// Flat index of each sequence's last token, in the order the sequences were given.
    pub last: Vec<usize>,
    /// Whether groups share a prefix; if not, each sequence's tokens are `first..=last`.
    pub shares_prefix: bool,
}

/// Packs `seqs` into rows: `rows[r]` lists the groups of row `r`, each a list of indices into
/// `seqs` (each index in exactly one group). A group's tokens are contiguous: with
/// `share_prefix`, the group's longest common prefix once, then each member's tokens after it,
/// in group order; without, each member's tokens whole (the members see only themselves, so a
/// group is just sequences side by side). The prefix is cut so that every member keeps at
/// least its last token in its own branch (so a member equal to another, or a prefix of it,
/// still has a state of its own to be read at). Rows are padded on the right to the longest.
///
/// # Panics
/// If an index in `rows` is out of range for `seqs`, or a group is empty.
pub fn pack(seqs: &[&Encoded], rows: &[Vec<Vec<usize>>], share_prefix: bool, pad_id: u32) -> Batch {
    let layouts: Vec<Vec<(usize, usize)>> = rows
        .iter()
        .map(|groups| {
            groups
                .iter()
                .map(|g| layout(seqs, g, share_prefix))
                .collect()
        })
        .collect();
    let len = layouts
        .iter()
        .map(|row| row.iter().map(|&(_, total)| total).sum::<usize>())
        .max()
        .unwrap_or(0);
    let n = rows.len();
    let mut batch = Batch::padding(n, len, pad_id);
    let mut group = vec![0; n * len];
    let mut branch = vec![0; n * len];
    let (mut first, mut last) = (vec![0; seqs.len()], vec![0; seqs.len()]);
    let mut next_group = 0u32;
    for (r, (groups, row_layout)) in rows.iter().zip(&layouts).enumerate() {
        let mut at = r * len;
        for (members, &(prefix, total)) in groups.iter().zip(row_layout) {
            group[at..at + total].fill(next_group);
            next_group += 1;
            let start = at;
            let mut put = |e: &Encoded, from: usize, to: usize, b: u32| {
                let end = at + (to - from);
                batch.ids[at..end].copy_from_slice(&e.ids[from..to]);
                batch.type_ids[at..end].copy_from_slice(&e.type_ids[from..to]);
                batch.attention_mask[at..end].fill(1);
                branch[at..end].fill(b);
                let begun = at;
                at = end;
                (begun, end)
            };
            put(seqs[members[0]], 0, prefix, 0);
            for (k, &i) in members.iter().enumerate() {
                let (begun, end) = put(seqs[i], prefix, seqs[i].ids.len(), k as u32 + 1);
                first[i] = if prefix > 0 { start } else { begun };
                last[i] = end.saturating_sub(1);
            }
        }
        // The row's padding, a group of its own.
        group[at..(r + 1) * len].fill(next_group);
        next_group += 1;
    }
    batch.packing = Some(Packing {
        group,
        branch,
        first,
        last,
        shares_prefix: share_prefix,
    });
    batch
}

/// Packs `seqs` by `groups`, one row per group, each group's common prefix computed once
/// ([`pack`] with `share_prefix`).
///
/// # Panics
/// If an index in `groups` is out of range for `seqs`, or a group is empty.
pub fn pack_shared_prefix(seqs: &[&Encoded], groups: &[Vec<usize>], pad_id: u32) -> Batch {
    let rows: Vec<Vec<Vec<usize>>> = groups.iter().map(|g| vec![g.clone()]).collect();
    pack(seqs, &rows, true, pad_id)
}

/// Cuts `units` (items of `lengths[i]` tokens each) into batches of at most `max_tokens`
/// tokens for [`pack`]ing into one row each: longest first (ties by index, so the result is
/// deterministic), each batch taking units in that order while they fit; a unit longer than
/// the budget is a batch of its own.
pub fn token_budget_batches(lengths: &[usize], max_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(lengths[i]), i));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut tokens = 0;
    for i in order {
        match batches.last_mut() {
            Some(b) if tokens + lengths[i] <= max_tokens => {
                b.push(i);
                tokens += lengths[i];
            }
            _ => {
                batches.push(vec![i]);
                tokens = lengths[i];
            }
        }
    }
    batches
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
    layout(seqs, members, true).0
}

/// The tokens of the row [`pack_shared_prefix`] makes of `members` (indices into `seqs`).
pub fn packed_len(seqs: &[&Encoded], members: &[usize]) -> usize {
    layout(seqs, members, true).1
}

/// One group's tokens: (the shared prefix length, the group's tokens).
fn layout(seqs: &[&Encoded], members: &[usize], share_prefix: bool) -> (usize, usize) {
    if !share_prefix {
        return (0, members.iter().map(|&i| seqs[i].ids.len()).sum());
    }
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
        // Groups are numbered through the batch; a row's padding is a group of its own.
        assert_eq!(p.group, [0, 0, 0, 0, 0, 0, 2, 2, 3, 3, 3, 3]);
        assert_eq!(p.first, [0, 6, 0]);
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
    fn without_a_shared_prefix_sequences_sit_side_by_side_in_groups_of_their_own() {
        let (a, b, c) = (enc(&[5, 6, 7]), enc(&[5, 6]), enc(&[9]));
        let seqs = [&a, &b, &c];
        let packed = pack(&seqs, &[vec![vec![0], vec![1]], vec![vec![2]]], false, 0);
        assert_eq!((packed.rows, packed.len), (2, 5));
        assert_eq!(packed.ids, [5, 6, 7, 5, 6, 9, 0, 0, 0, 0]);
        let p = packed.packing.unwrap();
        assert_eq!(p.group, [0, 0, 0, 1, 1, 3, 4, 4, 4, 4]);
        assert_eq!(p.branch, [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
        assert_eq!((p.first, p.last), (vec![0, 3, 5], vec![2, 4, 5]));
        assert!(!p.shares_prefix);
    }

    #[test]
    fn batches_take_the_longest_units_first_while_they_fit_the_budget() {
        let lengths = [3, 9, 4, 4, 12, 1];
        // In length order (12, 9, 4, 4, 3, 1) and a budget of 10: 12 alone (over the budget),
        // 9 (4 more would make 13), 4 + 4 (3 more would make 11), 3 + 1.
        assert_eq!(
            token_budget_batches(&lengths, 10),
            [vec![4], vec![1], vec![2, 3], vec![0, 5]]
        );
        assert!(token_budget_batches(&[], 10).is_empty());
    }

    #[test]
    fn sequences_with_nothing_in_common_are_only_concatenated() {
        let (a, b) = (enc(&[1, 2]), enc(&[3]));
        let packed = pack_shared_prefix(&[&a, &b], &[vec![0, 1]], 0);
        assert_eq!(packed.ids, [1, 2, 3]);
        assert_eq!(packed.packing.unwrap().branch, [1, 1, 2]);
    }
}
