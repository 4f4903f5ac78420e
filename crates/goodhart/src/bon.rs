//! Best-of-n from a fixed pool of samples: the unbiased estimator, the analytic KL of best-of-n,
//! and proxy/gold curves over n.
//!
//! With N samples of one prompt, best-of-n for every n ≤ N is estimated without resampling: the
//! sample of proxy rank i (1-based, ascending) is the best of a uniformly random n-subset with
//! probability `C(i−1, n−1) / C(N, n)` (Gao, Schulman & Hilton 2022, appendix: "unbiased
//! estimator"). Samples with equal proxy share their weight, so a result never depends on the
//! order the samples came in.

use serde::{Deserialize, Serialize};

use rewardkit_eval::stats::{mean, sample_std, Z95};

/// Why a pool cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolError {
    #[error("pool has {proxy} proxy scores but {gold} gold scores")]
    LengthMismatch { proxy: usize, gold: usize },
    #[error("pool is empty")]
    Empty,
    #[error("score {index} is not finite ({value})")]
    NotFinite { index: usize, value: f64 },
}

/// Weights of the unbiased best-of-n estimator over a pool of `n_pool` samples sorted by proxy
/// ascending: entry i − 1 is `C(i−1, n−1) / C(N, n)`, the probability that the i-th sample is
/// the maximum of a uniformly random n-subset. They sum to 1 (the hockey-stick identity).
///
/// Computed from the top down by the ratio `w_{i−1} / w_i = (i − n) / (i − 1)`, starting at
/// `w_N = n / N`: no factorials, no overflow, relative error ≈ N·ε. Entries below n are 0.
///
/// # Panics
/// If `n` is 0 or larger than `n_pool`.
pub fn bon_weights(n_pool: usize, n: usize) -> Vec<f64> {
    assert!(
        n >= 1 && n <= n_pool,
        "best-of-{n} needs 1 ≤ n ≤ pool size {n_pool}"
    );
    let mut w = vec![0.0; n_pool];
    w[n_pool - 1] = n as f64 / n_pool as f64;
    for i in (n..n_pool).rev() {
        // w[i - 1] is the weight of 1-based rank i; its ratio to rank i + 1 is (i + 1 − n) / i.
        w[i - 1] = w[i] * ((i + 1 - n) as f64 / i as f64);
    }
    w
}

/// A pool ranked by proxy, in blocks of equal proxy, with the mean of each value series over
/// each block.
struct Ranked {
    /// Exclusive end (in ascending proxy order) of each block.
    ends: Vec<usize>,
    /// `means[k][b]`: mean of series k over block b.
    means: Vec<Vec<f64>>,
}

impl Ranked {
    fn new(proxy: &[f64], series: &[&[f64]]) -> Ranked {
        let mut order: Vec<usize> = (0..proxy.len()).collect();
        order.sort_by(|&a, &b| proxy[a].total_cmp(&proxy[b]));
        let mut ends = Vec::new();
        let mut means = vec![Vec::new(); series.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len() && proxy[order[end]] == proxy[order[start]] {
                end += 1;
            }
            for (m, s) in means.iter_mut().zip(series) {
                let sum: f64 = order[start..end].iter().map(|&j| s[j]).sum();
                m.push(sum / (end - start) as f64);
            }
            ends.push(end);
            start = end;
        }
        Ranked { ends, means }
    }

    /// Expected value of each series at the best-of-n pick.
    fn best_of(&self, n: usize) -> Vec<f64> {
        let w = bon_weights(*self.ends.last().unwrap_or(&0), n);
        let mut start = 0;
        let mass: Vec<f64> = self
            .ends
            .iter()
            .map(|&end| {
                let m = w[start..end].iter().sum::<f64>();
                start = end;
                m
            })
            .collect();
        self.means
            .iter()
            .map(|m| m.iter().zip(&mass).map(|(v, p)| v * p).sum())
            .collect()
    }
}

/// Expected value of `values` at the best-of-n pick by `proxy`, over all n-subsets of the pool
/// equally likely. When several samples of a subset share its highest proxy, the pick is
/// their average; equivalently, a block of equal proxy gets its total weight times its mean
/// value, so the result does not depend on input order.
///
/// # Panics
/// If the slices differ in length, or `n` is 0 or larger than the pool.
pub fn best_of_n(proxy: &[f64], values: &[f64], n: usize) -> f64 {
    assert_eq!(
        proxy.len(),
        values.len(),
        "proxy and values differ in length"
    );
    Ranked::new(proxy, &[values]).best_of(n)[0]
}

/// The analytic KL(best-of-n ‖ base) bound `ln n − (n − 1)/n` (Beirami et al. 2024, "Theoretical
/// guarantees on the best-of-n alignment policy"); exact for continuous proxy without ties.
/// Defined for n ≥ 1 (0 at n = 1, increasing).
pub fn kl_best_of_n(n: f64) -> f64 {
    n.ln() - (n - 1.0) / n
}

/// The n ≥ 1 with `kl_best_of_n(n) = kl`: bisection on t = ln n, where the KL is
/// `t − 1 + e^{−t}`, increasing, and bracketed by t ∈ [0, kl + 1]. Gives 1 for kl ≤ 0.
pub fn n_for_kl(kl: f64) -> f64 {
    if kl.is_nan() {
        return f64::NAN;
    }
    let f = |t: f64| t - 1.0 + (-t).exp();
    let (mut lo, mut hi) = (0.0_f64, kl.max(0.0) + 1.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if f(mid) < kl {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (0.5 * (lo + hi)).exp()
}

/// One prompt's samples: proxy and gold score of each (same length).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PromptPool {
    pub proxy: Vec<f64>,
    pub gold: Vec<f64>,
}

impl PromptPool {
    /// Checks what [`bon_curve`] assumes: equal lengths, not empty, finite scores.
    pub fn validate(&self) -> Result<(), PoolError> {
        if self.proxy.len() != self.gold.len() {
            return Err(PoolError::LengthMismatch {
                proxy: self.proxy.len(),
                gold: self.gold.len(),
            });
        }
        if self.proxy.is_empty() {
            return Err(PoolError::Empty);
        }
        for (index, &value) in self.proxy.iter().chain(&self.gold).enumerate() {
            if !value.is_finite() {
                let index = index % self.proxy.len();
                return Err(PoolError::NotFinite { index, value });
            }
        }
        Ok(())
    }
}

/// Best-of-n at one n, averaged over prompts.
///
/// The 95% intervals are normal approximations over prompts: `mean ± z₀.₉₇₅ · s / √P`, with s
/// the sample standard deviation (P − 1) of the per-prompt best-of-n values. With a single
/// prompt there is no interval: both ends are NaN (`null` in JSON).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct CurvePoint {
    pub n: usize,
    /// [`kl_best_of_n`] of n.
    pub kl: f64,
    pub sqrt_kl: f64,
    pub proxy: f64,
    pub gold: f64,
    pub proxy_ci: [f64; 2],
    pub gold_ci: [f64; 2],
}

/// Mean and 95% normal interval of per-prompt values (at least one value).
fn mean_ci(x: &[f64]) -> (f64, [f64; 2]) {
    let m = mean(x).unwrap_or(f64::NAN);
    let half = sample_std(x).map_or(f64::NAN, |s| Z95 * s / (x.len() as f64).sqrt());
    (m, [m - half, m + half])
}

/// The best-of-n curve: for each n in `ns` with 1 ≤ n ≤ the smallest pool, the mean over
/// prompts of best-of-n proxy and gold (each prompt's pool sorted once). Other n are skipped;
/// no pools give no points.
///
/// # Panics
/// If a pool's proxy and gold differ in length (see [`PromptPool::validate`]).
pub fn bon_curve(pools: &[PromptPool], ns: &[usize]) -> Vec<CurvePoint> {
    let Some(n_max) = pools.iter().map(|p| p.proxy.len()).min() else {
        return Vec::new();
    };
    let ranked: Vec<Ranked> = pools
        .iter()
        .map(|p| {
            assert_eq!(
                p.proxy.len(),
                p.gold.len(),
                "proxy and gold differ in length"
            );
            Ranked::new(&p.proxy, &[&p.proxy, &p.gold])
        })
        .collect();
    ns.iter()
        .filter(|&&n| (1..=n_max).contains(&n))
        .map(|&n| {
            let (proxy, gold): (Vec<f64>, Vec<f64>) = ranked
                .iter()
                .map(|r| {
                    let v = r.best_of(n);
                    (v[0], v[1])
                })
                .unzip();
            let (proxy, proxy_ci) = mean_ci(&proxy);
            let (gold, gold_ci) = mean_ci(&gold);
            let kl = kl_best_of_n(n as f64);
            CurvePoint {
                n,
                kl,
                sqrt_kl: kl.sqrt(),
                proxy,
                gold,
                proxy_ci,
                gold_ci,
            }
        })
        .collect()
}

/// The grid 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, … (powers of two and 1.5 times them) up to
/// `n_max`, with `n_max` itself appended when it is not on the grid (so the full pool is
/// always a point). Empty for `n_max = 0`.
pub fn default_ns(n_max: usize) -> Vec<usize> {
    let mut ns = Vec::new();
    let mut p = 1usize;
    while p <= n_max {
        ns.push(p);
        if p >= 2 && p + p / 2 <= n_max {
            ns.push(p + p / 2);
        }
        p = match p.checked_mul(2) {
            Some(q) => q,
            None => break,
        };
    }
    if n_max > 0 && ns.last() != Some(&n_max) {
        ns.push(n_max);
    }
    ns
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewardkit_data::Rng;

    /// Exact binomial coefficient in integers.
    fn binom(n: u128, k: u128) -> u128 {
        if k > n {
            return 0;
        }
        (0..k).fold(1, |acc, j| acc * (n - j) / (j + 1))
    }

    #[test]
    fn weights_match_exact_binomials() {
        for n_pool in 1..=30usize {
            for n in 1..=n_pool {
                let w = bon_weights(n_pool, n);
                let total = binom(n_pool as u128, n as u128);
                for (i, &wi) in w.iter().enumerate() {
                    let exact = binom(i as u128, n as u128 - 1) as f64 / total as f64;
                    assert!(
                        (wi - exact).abs() <= 1e-14 * exact.max(1e-300),
                        "N={n_pool} n={n} i={} {wi} vs {exact}",
                        i + 1
                    );
                }
                let sum: f64 = w.iter().sum();
                assert!((sum - 1.0).abs() < 1e-14, "N={n_pool} n={n} sum {sum}");
            }
        }
    }

    #[test]
    fn weights_are_stable_for_large_pools() {
        for n in [1, 2, 17, 100, 5000, 9999, 10_000] {
            let w = bon_weights(10_000, n);
            assert!(w.iter().all(|x| x.is_finite() && *x >= 0.0));
            let sum: f64 = w.iter().sum();
            assert!((sum - 1.0).abs() < 1e-11, "n={n} sum {sum}");
            assert_eq!(w[9999], n as f64 / 10_000.0);
        }
        // n = 1 is the uniform distribution.
        assert!(bon_weights(10_000, 1).iter().all(|&x| x == 1e-4));
    }

    /// Mean over all n-subsets of the value at the subset's highest proxy (ties: the mean of
    /// the tied values within the subset).
    fn brute_force(proxy: &[f64], values: &[f64], n: usize) -> f64 {
        let (mut sum, mut count) = (0.0, 0usize);
        for mask in 0u32..1 << proxy.len() {
            if mask.count_ones() as usize != n {
                continue;
            }
            let members: Vec<usize> = (0..proxy.len()).filter(|i| mask >> i & 1 == 1).collect();
            let top = members.iter().map(|&i| proxy[i]).fold(f64::MIN, f64::max);
            let tied: Vec<f64> = members
                .iter()
                .filter(|&&i| proxy[i] == top)
                .map(|&i| values[i])
                .collect();
            sum += tied.iter().sum::<f64>() / tied.len() as f64;
            count += 1;
        }
        sum / count as f64
    }

    #[test]
    fn best_of_n_equals_enumeration_of_subsets() {
        let mut rng = Rng::new(11);
        for trial in 0..200 {
            let n_pool = 1 + rng.below(10);
            // Every other pool draws proxies from four values, so ties are common.
            let proxy: Vec<f64> = (0..n_pool)
                .map(|_| {
                    if trial % 2 == 0 {
                        rng.below(4) as f64
                    } else {
                        rng.normal()
                    }
                })
                .collect();
            let values: Vec<f64> = (0..n_pool).map(|_| rng.normal()).collect();
            for n in 1..=n_pool {
                let got = best_of_n(&proxy, &values, n);
                let want = brute_force(&proxy, &values, n);
                assert!((got - want).abs() < 1e-12, "{proxy:?} {values:?} n={n}");
            }
            // The same pool in another order gives the same answer.
            let mut order: Vec<usize> = (0..n_pool).collect();
            rng.shuffle(&mut order);
            let p2: Vec<f64> = order.iter().map(|&i| proxy[i]).collect();
            let v2: Vec<f64> = order.iter().map(|&i| values[i]).collect();
            for n in 1..=n_pool {
                let (a, b) = (best_of_n(&proxy, &values, n), best_of_n(&p2, &v2, n));
                assert!((a - b).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn best_of_one_is_the_mean_and_best_of_all_is_the_top() {
        let proxy = [0.3, -1.0, 2.0, 0.5, 1.0];
        let values = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((best_of_n(&proxy, &values, 1) - 3.0).abs() < 1e-15);
        assert_eq!(best_of_n(&proxy, &values, 5), 3.0);
        // A tie at the top averages the tied values.
        let proxy = [2.0, -1.0, 2.0, 0.5];
        assert_eq!(best_of_n(&proxy, &values[..4], 4), 2.0);
        // Worked by hand: best-of-2 of 4 with no ties picks rank 4 w.p. 1/2, rank 3 w.p. 1/3,
        // rank 2 w.p. 1/6. Ranks by proxy: [-1.0→2, 0.5→4, 2.0→{1,3}]: ranks 3 and 4 are a
        // tied block with mass 5/6 and mean 2, rank 2 has value 4.
        let want = 5.0 / 6.0 * 2.0 + 1.0 / 6.0 * 4.0;
        assert!((best_of_n(&proxy, &values[..4], 2) - want).abs() < 1e-15);
    }

    #[test]
    fn kl_of_best_of_n_and_its_inverse() {
        assert_eq!(kl_best_of_n(1.0), 0.0);
        assert!((kl_best_of_n(2.0) - (2f64.ln() - 0.5)).abs() < 1e-15);
        for n in [1.5, 2.0, 3.0, 16.0, 1000.0, 1e6, 1e12] {
            let back = n_for_kl(kl_best_of_n(n));
            assert!((back - n).abs() <= 1e-9 * n, "{n} → {back}");
        }
        assert_eq!(n_for_kl(0.0), 1.0);
        assert_eq!(n_for_kl(-1.0), 1.0);
    }

    #[test]
    fn curve_averages_prompts_with_normal_intervals() {
        let pools = [
            PromptPool {
                proxy: vec![0.0, 1.0, 2.0],
                gold: vec![0.0, 3.0, 0.0],
            },
            PromptPool {
                proxy: vec![5.0, 4.0, 3.0, 2.0],
                gold: vec![1.0, 1.0, 1.0, 1.0],
            },
        ];
        let c = bon_curve(&pools, &[0, 1, 3, 4]);
        // n = 0 is not a best-of-n; n = 4 exceeds the smaller pool.
        assert_eq!(c.iter().map(|p| p.n).collect::<Vec<_>>(), [1, 3]);
        // n = 1: per-prompt means are proxy (1, 3.5) and gold (1, 1).
        assert!((c[0].proxy - 2.25).abs() < 1e-15 && (c[0].gold - 1.0).abs() < 1e-15);
        // s = |1 − 3.5| / √2 over two prompts: half-width z·s/√2 = z·1.25.
        let half = Z95 * 1.25;
        assert!((c[0].proxy_ci[0] - (2.25 - half)).abs() < 1e-12);
        assert!((c[0].proxy_ci[1] - (2.25 + half)).abs() < 1e-12);
        assert_eq!(c[0].gold_ci, [1.0, 1.0]);
        assert_eq!(c[0].kl, 0.0);
        // n = 3: prompt one is its top (proxy 2, gold 0); prompt two's best-of-3 of 4 picks
        // its top (proxy 5) w.p. 3/4 and proxy 4 w.p. 1/4.
        assert!((c[1].proxy - (2.0 + 4.75) / 2.0).abs() < 1e-12);
        assert!((c[1].gold - 0.5).abs() < 1e-12);
        assert!((c[1].sqrt_kl - kl_best_of_n(3.0).sqrt()).abs() < 1e-15);
        // One prompt: no interval.
        let one = bon_curve(&pools[..1], &[2]);
        assert!(one[0].gold_ci.iter().all(|x| x.is_nan()));
        assert!(bon_curve(&[], &[1]).is_empty());
    }

    #[test]
    fn pools_are_validated() {
        let ok = PromptPool {
            proxy: vec![1.0],
            gold: vec![2.0],
        };
        assert_eq!(ok.validate(), Ok(()));
        let short = PromptPool {
            proxy: vec![1.0, 2.0],
            gold: vec![2.0],
        };
        assert_eq!(
            short.validate(),
            Err(PoolError::LengthMismatch { proxy: 2, gold: 1 })
        );
        let nan = PromptPool {
            proxy: vec![1.0, 2.0],
            gold: vec![0.0, f64::NAN],
        };
        assert!(matches!(
            nan.validate(),
            Err(PoolError::NotFinite { index: 1, .. })
        ));
    }

    #[test]
    fn default_grid() {
        assert_eq!(default_ns(0), Vec::<usize>::new());
        assert_eq!(default_ns(1), [1]);
        assert_eq!(default_ns(32), [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]);
        assert_eq!(default_ns(50), [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 50]);
    }
}
