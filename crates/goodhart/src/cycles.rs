//! Preference cycles: when pairwise preferences are intransitive, no reward model (a single
//! score per item) can reproduce them. This module counts the cycles of the majority relation
//! and measures what a Bradley-Terry fit must give up: the log-likelihood of the saturated
//! model (every pair at its own empirical win rate) minus that of the best BT fit.
//!
//! A comparison is `(a, b, outcome)`: outcome 1 when a wins, 0 when b wins, 0.5 for a tie; any
//! value in [0, 1] is read as a's share of the win (a tie is half a win each, the usual
//! treatment in Bradley-Terry likelihoods).

use std::collections::BTreeMap;

use serde::Serialize;

use rewardkit_eval::stats::softplus;

/// A comparison `(item a, item b, outcome for a)`.
pub type Comparison = (usize, usize, f64);

/// Strength of the Gamma(1 + ε, ε) prior on each BT strength γ (mode 1) used by
/// [`fit_bradley_terry`].
pub const BT_PRIOR: f64 = 1e-3;

/// Iterations of [`fit_bradley_terry`] stop early once no log-strength moves by more than this.
const BT_TOLERANCE: f64 = 1e-12;

/// A comparison that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CycleError {
    #[error("comparison {index}: item {item} out of range (n_items = {n_items})")]
    ItemOutOfRange {
        index: usize,
        item: usize,
        n_items: usize,
    },
    #[error("comparison {index}: item {item} compared with itself")]
    SelfComparison { index: usize, item: usize },
    #[error("comparison {index}: outcome {outcome} is not in [0, 1]")]
    BadOutcome { index: usize, outcome: f64 },
}

/// Comparisons aggregated per unordered pair `(a, b)`, a < b: (games, a's wins).
type Pairs = BTreeMap<(usize, usize), (f64, f64)>;

/// Checks the comparisons and aggregates them per pair.
fn pairs(n_items: usize, comparisons: &[Comparison]) -> Result<Pairs, CycleError> {
    let mut out = BTreeMap::new();
    for (index, &(a, b, o)) in comparisons.iter().enumerate() {
        if let Some(item) = [a, b].into_iter().find(|&i| i >= n_items) {
            return Err(CycleError::ItemOutOfRange {
                index,
                item,
                n_items,
            });
        }
        if a == b {
            return Err(CycleError::SelfComparison { index, item: a });
        }
        if !(0.0..=1.0).contains(&o) {
            return Err(CycleError::BadOutcome { index, outcome: o });
        }
        let (key, wins) = if a < b {
            ((a, b), o)
        } else {
            ((b, a), 1.0 - o)
        };
        let e = out.entry(key).or_insert((0.0, 0.0));
        e.0 += 1.0;
        e.1 += wins;
    }
    Ok(out)
}

/// The majority relation as an antisymmetric matrix: `net[a][b]` = a's wins over b minus b's
/// wins over a (a tie adds 0). a beats b by majority when `net[a][b] > 0`.
pub fn majority_tournament(
    n_items: usize,
    comparisons: &[Comparison],
) -> Result<Vec<Vec<f64>>, CycleError> {
    let mut net = vec![vec![0.0; n_items]; n_items];
    for ((a, b), (games, wins)) in pairs(n_items, comparisons)? {
        net[a][b] = 2.0 * wins - games;
        net[b][a] = -net[a][b];
    }
    Ok(net)
}

/// The number of unordered triples {a, b, c} that are cyclic under the majority relation
/// (a beats b, b beats c, c beats a, strictly). Brute force over all triples: O(n³).
pub fn count_3_cycles(net: &[Vec<f64>]) -> usize {
    let beats = |a: usize, b: usize| net[a][b] > 0.0;
    let n = net.len();
    let mut count = 0;
    for a in 0..n {
        for b in a + 1..n {
            for c in b + 1..n {
                if (beats(a, b) && beats(b, c) && beats(c, a))
                    || (beats(b, a) && beats(c, b) && beats(a, c))
                {
                    count += 1;
                }
            }
        }
    }
    count
}

/// A Bradley-Terry fit: P(a beats b) = σ(s_a − s_b).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct BtFit {
    /// Log-strengths s, shifted to mean 0.
    pub strengths: Vec<f64>,
    /// Log-likelihood of the comparisons (the prior left out):
    /// `Σ o·ln σ(s_a − s_b) + (1 − o)·ln σ(s_b − s_a)`.
    pub log_likelihood: f64,
    /// Share of the comparisons with a winner (outcome ≠ 0.5) whose winner has the strictly
    /// higher strength (equal strengths count as wrong, as equal scores do in rewardkit-eval);
    /// `None` when every comparison is a tie.
    pub accuracy: Option<f64>,
    /// MM iterations run.
    pub iterations: usize,
    /// Whether the iterations stopped because no log-strength moved by more than 1e-12 (MM
    /// is slow when the data nearly separate the items: the strengths spread out by a shrinking
    /// step each iteration).
    pub converged: bool,
}

/// `Σ o·ln σ(s_a − s_b) + (1 − o)·ln σ(s_b − s_a)` over the aggregated pairs.
fn bt_log_likelihood(pairs: &Pairs, s: &[f64]) -> f64 {
    pairs
        .iter()
        .map(|(&(a, b), &(games, wins))| {
            let d = s[a] - s[b];
            -wins * softplus(-d) - (games - wins) * softplus(d)
        })
        .sum()
}

/// Fits Bradley-Terry strengths by the MM algorithm of Hunter (2004, "MM algorithms for
/// generalized Bradley-Terry models"), at most `iters` iterations, stopping once no
/// log-strength changes by more than 1e-12.
///
/// Each item's strength γ = e^s has a Gamma(1 + ε, ε) prior with ε = [`BT_PRIOR`] (its mode
/// is 1), which keeps the maximum finite and unique when an item never wins or never loses
/// (where the plain maximum likelihood is at infinity). The MM step for this posterior mode
/// (Caron & Doucet 2012) updates all items at once:
/// `γ_i ← (W_i + ε) / (ε + Σ_j n_ij / (γ_i + γ_j))`, with W_i the wins of i (ties count
/// half) and n_ij the games of i against j; it increases the penalised likelihood every step.
pub fn fit_bradley_terry(
    n_items: usize,
    comparisons: &[Comparison],
    iters: usize,
) -> Result<BtFit, CycleError> {
    let pairs = pairs(n_items, comparisons)?;
    let mut wins = vec![0.0; n_items];
    for (&(a, b), &(games, w)) in &pairs {
        wins[a] += w;
        wins[b] += games - w;
    }
    let mut gamma = vec![1.0; n_items];
    let (mut iterations, mut converged) = (0, false);
    while iterations < iters && !converged {
        iterations += 1;
        let mut denom = vec![BT_PRIOR; n_items];
        for (&(a, b), &(games, _)) in &pairs {
            let t = games / (gamma[a] + gamma[b]);
            denom[a] += t;
            denom[b] += t;
        }
        let mut change = 0.0_f64;
        for i in 0..n_items {
            let new = (wins[i] + BT_PRIOR) / denom[i];
            change = change.max((new / gamma[i]).ln().abs());
            gamma[i] = new;
        }
        converged = change <= BT_TOLERANCE;
    }
    let log_gamma: Vec<f64> = gamma.iter().map(|g| g.ln()).collect();
    let centre = log_gamma.iter().sum::<f64>() / n_items.max(1) as f64;
    let strengths: Vec<f64> = log_gamma.iter().map(|s| s - centre).collect();
    let (mut right, mut decided) = (0usize, 0usize);
    for &(a, b, o) in comparisons {
        if o != 0.5 {
            decided += 1;
            let (winner, loser) = if o > 0.5 { (a, b) } else { (b, a) };
            right += usize::from(strengths[winner] > strengths[loser]);
        }
    }
    Ok(BtFit {
        log_likelihood: bt_log_likelihood(&pairs, &strengths),
        strengths,
        accuracy: (decided > 0).then(|| right as f64 / decided as f64),
        iterations,
        converged,
    })
}

/// The log-likelihood of the saturated model, each unordered pair at its own empirical win
/// rate p̂: `Σ_pairs n·(p̂ ln p̂ + (1 − p̂) ln(1 − p̂))`, with 0·ln 0 = 0. It bounds every BT
/// log-likelihood from above; the gap is what intransitivity (and noise) costs a single score.
pub fn saturated_log_likelihood(
    n_items: usize,
    comparisons: &[Comparison],
) -> Result<f64, CycleError> {
    let xlnp = |x: f64, p: f64| if x > 0.0 { x * p.ln() } else { 0.0 };
    Ok(pairs(n_items, comparisons)?
        .values()
        .map(|&(games, wins)| {
            let p = wins / games;
            xlnp(wins, p) + xlnp(games - wins, 1.0 - p)
        })
        .sum())
}

/// Cycles in a preference data set: pairs grouped by prompt, each prompt's distinct responses
/// the items of one tournament (PandaLM compares several models' responses per instruction).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct DataCycles {
    /// Prompts with at least three distinct responses and three comparisons.
    pub tournaments: usize,
    pub comparisons: usize,
    /// Tournaments whose majority relation has at least one 3-cycle.
    pub tournaments_with_cycles: usize,
    /// Intransitive triples a > b > c > a, over all tournaments.
    pub cycles: usize,
    /// Saturated minus Bradley-Terry log-likelihood, summed over tournaments (nats): what a
    /// single score per response cannot express.
    pub bt_cost_nats: f64,
    /// The same per comparison.
    pub bt_cost_per_comparison: f64,
    /// Share of decided comparisons the per-prompt BT fits order as labelled.
    pub bt_accuracy: Option<f64>,
    /// The same, in tournaments without cycles and with cycles.
    pub bt_accuracy_acyclic: Option<f64>,
    pub bt_accuracy_cyclic: Option<f64>,
}

/// Finds the cycles of every prompt's tournament and fits each by Bradley-Terry (`iters` MM
/// iterations at most). Ties count half a win each.
pub fn cycles_in_pairs<'a>(
    pairs: &'a [rewardkit_data::PreferencePair],
    iters: usize,
) -> DataCycles {
    use rewardkit_data::Text;
    let mut groups: BTreeMap<String, (Vec<&'a Text>, Vec<Comparison>)> = BTreeMap::new();
    for p in pairs {
        let (items, comps) = groups.entry(p.prompt.render()).or_default();
        let mut index = |t: &'a Text| match items.iter().position(|x| *x == t) {
            Some(i) => i,
            None => {
                items.push(t);
                items.len() - 1
            }
        };
        let (a, b) = (index(&p.chosen), index(&p.rejected));
        if a != b {
            comps.push((a, b, if p.tie { 0.5 } else { 1.0 }));
        }
    }
    let mut out = DataCycles {
        tournaments: 0,
        comparisons: 0,
        tournaments_with_cycles: 0,
        cycles: 0,
        bt_cost_nats: 0.0,
        bt_cost_per_comparison: 0.0,
        bt_accuracy: None,
        bt_accuracy_acyclic: None,
        bt_accuracy_cyclic: None,
    };
    // (right, decided) overall, acyclic, cyclic.
    let mut acc = [(0.0, 0.0); 3];
    for (items, comps) in groups.values() {
        if items.len() < 3 || comps.len() < 3 {
            continue;
        }
        let n = items.len();
        let (Ok(net), Ok(fit), Ok(saturated)) = (
            majority_tournament(n, comps),
            fit_bradley_terry(n, comps, iters),
            saturated_log_likelihood(n, comps),
        ) else {
            continue; // indices are built here, so comparisons are always valid
        };
        let cycles = count_3_cycles(&net);
        out.tournaments += 1;
        out.comparisons += comps.len();
        out.cycles += cycles;
        out.tournaments_with_cycles += usize::from(cycles > 0);
        out.bt_cost_nats += saturated - fit.log_likelihood;
        let decided = comps.iter().filter(|c| c.2 != 0.5).count() as f64;
        if let Some(a) = fit.accuracy {
            for k in [0, if cycles > 0 { 2 } else { 1 }] {
                acc[k].0 += a * decided;
                acc[k].1 += decided;
            }
        }
    }
    out.bt_cost_per_comparison = out.bt_cost_nats / out.comparisons.max(1) as f64;
    let rate = |(right, n): (f64, f64)| (n > 0.0).then(|| right / n);
    out.bt_accuracy = rate(acc[0]);
    out.bt_accuracy_acyclic = rate(acc[1]);
    out.bt_accuracy_cyclic = rate(acc[2]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewardkit_data::Rng;
    use rewardkit_eval::stats::sigmoid;

    /// `games` comparisons of a against b of which a wins `wins`.
    fn games(a: usize, b: usize, games: usize, wins: usize) -> Vec<Comparison> {
        (0..games)
            .map(|k| (a, b, if k < wins { 1.0 } else { 0.0 }))
            .collect()
    }

    fn cost(n: usize, c: &[Comparison], fit: &BtFit) -> f64 {
        saturated_log_likelihood(n, c).unwrap() - fit.log_likelihood
    }

    #[test]
    fn a_perfect_cycle() {
        let c = [(0, 1, 1.0), (1, 2, 1.0), (2, 0, 1.0)];
        let net = majority_tournament(3, &c).unwrap();
        assert_eq!(net[0][1], 1.0);
        assert_eq!(net[0][2], -1.0);
        assert_eq!(count_3_cycles(&net), 1);
        let fit = fit_bradley_terry(3, &c, 1000).unwrap();
        assert_eq!(fit.strengths, [0.0, 0.0, 0.0]);
        // Equal strengths order no comparison correctly (equal counts as wrong); any strict
        // order of three items would get one or two of the three.
        assert_eq!(fit.accuracy, Some(0.0));
        assert!((fit.log_likelihood - 3.0 * 0.5f64.ln()).abs() < 1e-12);
        // The saturated model predicts every game with certainty.
        assert_eq!(saturated_log_likelihood(3, &c).unwrap(), 0.0);
        assert!((cost(3, &c, &fit) - 3.0 * 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn transitive_data_consistent_with_bt_costs_nothing() {
        // Win counts equal to γ_a / (γ_a + γ_b) for γ = (4, 2, 1): 4 of 6, 2 of 3, 4 of 5.
        let c = [games(0, 1, 6, 4), games(1, 2, 3, 2), games(2, 0, 5, 1)].concat();
        assert_eq!(count_3_cycles(&majority_tournament(3, &c).unwrap()), 0);
        let fit = fit_bradley_terry(3, &c, 10_000).unwrap();
        let want = [4f64.ln(), 2f64.ln(), 0.0];
        let centre = want.iter().sum::<f64>() / 3.0;
        for (s, w) in fit.strengths.iter().zip(want) {
            assert!((s - (w - centre)).abs() < 2e-3, "{:?}", fit.strengths);
        }
        assert!(
            (0.0..1e-5).contains(&cost(3, &c, &fit)),
            "{}",
            cost(3, &c, &fit)
        );
        assert_eq!(fit.accuracy, Some(10.0 / 14.0));
    }

    #[test]
    fn an_item_that_never_wins_still_converges() {
        // 0 > 1 > 2 > 3 in every game: the plain maximum likelihood is at infinity.
        let mut c = Vec::new();
        for a in 0..4 {
            for b in a + 1..4 {
                c.extend(games(a, b, 3, 3));
            }
        }
        // MM needs about 136,000 iterations here.
        assert!(!fit_bradley_terry(4, &c, 1000).unwrap().converged);
        let fit = fit_bradley_terry(4, &c, 1_000_000).unwrap();
        assert!(fit.converged, "{} iterations", fit.iterations);
        // Reference: the same MM update with ε = 1e-3 written in numpy 2.4 (run to a largest
        // log-change of 1e-12, then centred), printed to 8 decimals.
        let want = [10.84018654, 3.93143043, -3.38245784, -11.38915913];
        for (s, w) in fit.strengths.iter().zip(want) {
            assert!((s - w).abs() < 1e-6, "{:?}", fit.strengths);
        }
        assert_eq!(fit.accuracy, Some(1.0));
        assert_eq!(count_3_cycles(&majority_tournament(4, &c).unwrap()), 0);
        // The prior costs a little likelihood against a perfect ordering.
        assert!(
            (0.0..0.1).contains(&cost(4, &c, &fit)),
            "{}",
            cost(4, &c, &fit)
        );
    }

    /// Maximum likelihood by Newton's method with s_0 fixed at 0 (3 items: 2 free).
    fn newton_3(pairs: &Pairs) -> Vec<f64> {
        let mut s = [0.0; 3];
        for _ in 0..100 {
            let mut g = [0.0; 3];
            let mut h = [[0.0; 3]; 3];
            for (&(a, b), &(n, w)) in pairs {
                let p = sigmoid(s[a] - s[b]);
                g[a] += w - n * p;
                g[b] -= w - n * p;
                let q = n * p * (1.0 - p);
                h[a][a] -= q;
                h[b][b] -= q;
                h[a][b] += q;
                h[b][a] += q;
            }
            // Solve the 2×2 system over items 1 and 2: Δ = −H⁻¹ g.
            let det = h[1][1] * h[2][2] - h[1][2] * h[2][1];
            s[1] -= (h[2][2] * g[1] - h[1][2] * g[2]) / det;
            s[2] -= (h[1][1] * g[2] - h[2][1] * g[1]) / det;
        }
        let centre = s.iter().sum::<f64>() / 3.0;
        s.iter().map(|x| x - centre).collect()
    }

    #[test]
    fn mm_matches_newton_on_three_items() {
        // 0 beats 1 in 7 of 10, 1 beats 2 in 5 of 8, 2 beats 0 in 4 of 6 (a majority cycle),
        // plus two ties.
        let mut c = [games(0, 1, 10, 7), games(1, 2, 8, 5), games(2, 0, 6, 4)].concat();
        c.extend([(0, 2, 0.5), (1, 0, 0.5)]);
        assert_eq!(count_3_cycles(&majority_tournament(3, &c).unwrap()), 1);
        let fit = fit_bradley_terry(3, &c, 10_000).unwrap();
        let mle = newton_3(&pairs(3, &c).unwrap());
        let mle_ll = bt_log_likelihood(&pairs(3, &c).unwrap(), &mle);
        // The prior moves the optimum by O(ε): strengths agree to 1e-3, and the likelihood,
        // flat at the optimum, to O(ε²).
        for (s, m) in fit.strengths.iter().zip(&mle) {
            assert!((s - m).abs() < 1e-3, "{:?} vs {mle:?}", fit.strengths);
        }
        assert!(fit.log_likelihood <= mle_ll + 1e-12);
        assert!(
            mle_ll - fit.log_likelihood < 1e-6,
            "{} vs {mle_ll}",
            fit.log_likelihood
        );
        // Cyclic data: BT costs a positive amount against the saturated model.
        assert!(cost(3, &c, &fit) > 0.1);
    }

    #[test]
    fn cycle_count_matches_the_tournament_formula() {
        // In a complete tournament without ties the 3-cycles number C(n,3) − Σ_i C(out_i, 2)
        // (Kendall & Babington Smith 1940).
        let n = 30;
        let mut rng = Rng::new(5);
        let mut c = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                c.push((a, b, if rng.uniform() < 0.5 { 1.0 } else { 0.0 }));
            }
        }
        let net = majority_tournament(n, &c).unwrap();
        let out: Vec<usize> = net
            .iter()
            .map(|row| row.iter().filter(|&&x| x > 0.0).count())
            .collect();
        let want = n * (n - 1) * (n - 2) / 6
            - out
                .iter()
                .map(|k| k * k.saturating_sub(1) / 2)
                .sum::<usize>();
        assert_eq!(count_3_cycles(&net), want);
        assert!(want > 0);
    }

    #[test]
    fn bad_comparisons_are_errors() {
        assert_eq!(
            majority_tournament(2, &[(0, 2, 1.0)]),
            Err(CycleError::ItemOutOfRange {
                index: 0,
                item: 2,
                n_items: 2
            })
        );
        assert_eq!(
            fit_bradley_terry(2, &[(0, 1, 1.0), (1, 1, 0.0)], 10),
            Err(CycleError::SelfComparison { index: 1, item: 1 })
        );
        assert!(matches!(
            saturated_log_likelihood(2, &[(0, 1, 1.5)]),
            Err(CycleError::BadOutcome { index: 0, .. })
        ));
        let empty = fit_bradley_terry(2, &[], 10).unwrap();
        assert_eq!(empty.strengths, [0.0, 0.0]);
        assert_eq!(empty.accuracy, None);
    }

    #[test]
    fn cycles_in_pairs_groups_by_prompt() {
        use rewardkit_data::PreferencePair;
        // Prompt p: a > b, b > c, c > a (one cycle); prompt q: x > y, y > z, x > z (none).
        let pairs = vec![
            PreferencePair::new("p", "a", "b"),
            PreferencePair::new("p", "b", "c"),
            PreferencePair::new("p", "c", "a"),
            PreferencePair::new("q", "x", "y"),
            PreferencePair::new("q", "y", "z"),
            PreferencePair::new("q", "x", "z"),
            PreferencePair::new("r", "only", "two"),
        ];
        let d = cycles_in_pairs(&pairs, 200_000);
        assert_eq!((d.tournaments, d.comparisons), (2, 6));
        assert_eq!((d.tournaments_with_cycles, d.cycles), (1, 1));
        // The cycle costs 3 ln 2 (see perfect_cycle test); the transitive prompt nearly nothing
        // (its BT fit approaches the saturated one only as strengths diverge, held by the prior).
        assert!((d.bt_cost_nats - 3.0 * 2f64.ln()).abs() < 0.05, "{d:?}");
        assert_eq!(d.bt_accuracy_acyclic, Some(1.0));
        assert_eq!(d.bt_accuracy_cyclic, Some(0.0));
        assert_eq!(d.bt_accuracy, Some(0.5));
    }
}
