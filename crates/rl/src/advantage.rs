//! From rewards to advantages: clipping and whitening of rewards, the leave-one-out baseline
//! (RLOO, Ahmadian et al. 2024; Kool et al. 2019) and GRPO's group standardisation.

/// Clips each reward to `[−c, c]` (TRL's `reward_clip_range`-style safeguard).
pub fn clip_rewards(rewards: &mut [f64], c: f64) {
    for r in rewards {
        *r = r.clamp(-c, c);
    }
}

/// Whitens rewards over the whole batch: `(r − mean) / (std + 1e-8)` (population std).
pub fn whiten(rewards: &mut [f64]) {
    let (mean, std) = mean_std(rewards);
    for r in rewards {
        *r = (*r - mean) / (std + 1e-8);
    }
}

/// Mean and population standard deviation (0, 0 for an empty slice).
pub fn mean_std(x: &[f64]) -> (f64, f64) {
    if x.is_empty() {
        return (0.0, 0.0);
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Advantages of `rewards`, laid out as consecutive groups of `k` samples of one prompt: each
/// sample's reward minus the mean of the other `k − 1` of its group (RLOO: a baseline that does
/// not depend on the sample, so the policy gradient stays unbiased), then, with `group_std`,
/// divided by the group's standard deviation (+1e-4; GRPO's standardisation, which makes the
/// scale of the reward irrelevant at the price of a bias). `k` must divide the length and be at
/// least 2.
pub fn rloo(rewards: &[f64], k: usize, group_std: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(rewards.len());
    for group in rewards.chunks(k) {
        let sum: f64 = group.iter().sum();
        let m = group.len() as f64;
        let (_, std) = mean_std(group);
        for &r in group {
            let baseline = (sum - r) / (m - 1.0).max(1.0);
            let a = r - baseline;
            out.push(if group_std { a / (std + 1e-4) } else { a });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_one_out_baselines() {
        // Group [1, 2, 3]: baselines 2.5, 2, 1.5.
        let a = rloo(&[1.0, 2.0, 3.0, 0.0, 0.0, 6.0], 3, false);
        assert_eq!(a, vec![-1.5, 0.0, 1.5, -3.0, -3.0, 6.0]);
        // RLOO advantages are k/(k−1) times the mean-centred rewards; standardised, the group
        // [1, 2, 3] (std √(2/3)) gives ±1.5/(√(2/3) + 1e-4).
        let s = rloo(&[1.0, 2.0, 3.0], 3, true);
        assert!((s[2] - 1.5 / ((2.0f64 / 3.0).sqrt() + 1e-4)).abs() < 1e-12);
        let mut w = vec![1.0, 3.0];
        whiten(&mut w);
        assert!((w[0] + 1.0).abs() < 1e-6 && (w[1] - 1.0).abs() < 1e-6);
        let mut c = vec![-5.0, 0.5, 5.0];
        clip_rewards(&mut c, 1.0);
        assert_eq!(c, vec![-1.0, 0.5, 1.0]);
    }
}
