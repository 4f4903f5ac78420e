//! The estimators against exact values on enumerable distributions: the policy gradient of the
//! PPO surrogate with RLOO advantages (at π = π_old) against the analytic gradient of E[r] for
//! a categorical policy, and the k1 / k3 KL estimators against the exact KL.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use candle_core::{Device, Tensor, Var, D};
use rewardkit_data::Rng;
use rewardkit_rl::advantage::rloo;
use rewardkit_rl::kl::{exact_kl, k1, k3};
use rewardkit_rl::ppo::{ppo_loss, PpoInputs};
use rewardkit_rl::KlEstimator;

/// Draws an index from probabilities `p`.
fn draw(p: &[f64], rng: &mut Rng) -> usize {
    let u = rng.uniform();
    let mut acc = 0.0;
    for (i, &x) in p.iter().enumerate() {
        acc += x;
        if u < acc {
            return i;
        }
    }
    p.len() - 1
}

fn softmax(theta: &[f64]) -> Vec<f64> {
    let m = theta.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = theta.iter().map(|t| (t - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// π = softmax(θ) over 5 actions with rewards r. The analytic gradient of E[r] = Σ π_a r_a is
/// ∂/∂θ_j = π_j (r_j − E[r]). Each draw: k = 4 actions from π, RLOO advantages, the surrogate's
/// gradient through log π (ratio 1, no clipping active); over 4,000 draws its mean must be
/// within 3 standard errors of the analytic value in every component, and the standard errors
/// small enough (< 0.01) for that to say something.
#[test]
fn the_policy_gradient_is_unbiased_for_the_gradient_of_expected_reward() {
    let theta0 = [0.3, -0.5, 1.0, 0.0, -1.2];
    let rewards = [1.0, 0.0, 0.2, 2.0, -1.0];
    let pi = softmax(&theta0);
    let er: f64 = pi.iter().zip(&rewards).map(|(p, r)| p * r).sum();
    let analytic: Vec<f64> = pi.iter().zip(&rewards).map(|(p, r)| p * (r - er)).collect();
    let dev = Device::Cpu;
    let theta = Var::new(&theta0.map(|t| t as f32)[..], &dev).unwrap();
    let (k, draws) = (4, 4000);
    let mut rng = Rng::new(11);
    let mut sum = [0f64; 5];
    let mut sq = [0f64; 5];
    for _ in 0..draws {
        let actions: Vec<usize> = (0..k).map(|_| draw(&pi, &mut rng)).collect();
        let r: Vec<f64> = actions.iter().map(|&a| rewards[a]).collect();
        let adv = rloo(&r, k, false);
        let logp = log_softmax(theta.as_tensor());
        let idx =
            Tensor::from_vec(actions.iter().map(|&a| a as u32).collect(), (k, 1), &dev).unwrap();
        let new = logp
            .unsqueeze(0)
            .unwrap()
            .broadcast_as((k, 5))
            .unwrap()
            .contiguous()
            .unwrap()
            .gather(&idx, D::Minus1)
            .unwrap();
        let old: Vec<Vec<f32>> = new.to_vec2().unwrap();
        let inputs = PpoInputs {
            old: &old,
            reference: &old,
            advantages: &adv,
            lengths: &[1; 4],
            clip_range: 0.2,
            beta: 0.0,
            estimator: KlEstimator::K1InReward,
            normaliser: k,
        };
        let (loss, stats) = ppo_loss(&new, &inputs).unwrap();
        assert_eq!(stats.clipped, 0);
        let g: Vec<f32> = loss
            .backward()
            .unwrap()
            .get(theta.as_tensor())
            .unwrap()
            .to_vec1()
            .unwrap();
        for j in 0..5 {
            // The loss is −objective: its negative gradient estimates ∇E[r].
            let x = -g[j] as f64;
            sum[j] += x;
            sq[j] += x * x;
        }
    }
    let n = draws as f64;
    for j in 0..5 {
        let mean = sum[j] / n;
        let se = ((sq[j] / n - mean * mean) / (n - 1.0)).sqrt();
        println!(
            "θ_{j}: estimate {mean:.4} ± {se:.4}, analytic {:.4}",
            analytic[j]
        );
        assert!(se < 0.01, "standard error {se}");
        assert!(
            (mean - analytic[j]).abs() < 3.0 * se,
            "component {j}: estimate {mean} ± {se}, analytic {}",
            analytic[j]
        );
    }
}

/// log softmax of a vector from candle ops (as `CausalLm::response_logprobs` computes it).
fn log_softmax(x: &Tensor) -> Tensor {
    let max = x.max_keepdim(D::Minus1).unwrap().detach();
    let s = x.broadcast_sub(&max).unwrap();
    let lse = s
        .exp()
        .unwrap()
        .sum_keepdim(D::Minus1)
        .unwrap()
        .log()
        .unwrap();
    s.broadcast_sub(&lse).unwrap()
}

/// Two distributions over 6 outcomes: the expectation under p of k1 and of k3 (by exact
/// enumeration) is KL(p‖q); Monte Carlo means over 20,000 draws are within 3 standard errors
/// of it; k3 is never negative and, for these close distributions, has the smaller variance.
#[test]
fn k1_and_k3_estimate_the_exact_kl() {
    let p = [0.3, 0.25, 0.2, 0.1, 0.1, 0.05];
    let q = [0.25, 0.25, 0.25, 0.1, 0.05, 0.1];
    let lp: Vec<f64> = p.iter().map(|x: &f64| x.ln()).collect();
    let lq: Vec<f64> = q.iter().map(|x: &f64| x.ln()).collect();
    let kl = exact_kl(&lp, &lq);
    // KL by hand: Σ p ln(p/q).
    let by_hand: f64 = p.iter().zip(&q).map(|(a, b)| a * (a / b).ln()).sum();
    assert!((kl - by_hand).abs() < 1e-15 && kl > 0.01);
    let e1: f64 = (0..6).map(|i| p[i] * k1(lp[i], lq[i])).sum();
    let e3: f64 = (0..6).map(|i| p[i] * k3(lp[i], lq[i])).sum();
    assert!((e1 - kl).abs() < 1e-12, "E[k1] = {e1}, KL = {kl}");
    assert!((e3 - kl).abs() < 1e-12, "E[k3] = {e3}, KL = {kl}");
    let mut rng = Rng::new(5);
    let n = 20_000;
    let (mut s1, mut q1, mut s3, mut q3) = (0.0, 0.0, 0.0, 0.0);
    for _ in 0..n {
        let i = draw(&p, &mut rng);
        let (a, b) = (k1(lp[i], lq[i]), k3(lp[i], lq[i]));
        assert!(b >= 0.0);
        s1 += a;
        q1 += a * a;
        s3 += b;
        q3 += b * b;
    }
    let n = n as f64;
    let (m1, m3) = (s1 / n, s3 / n);
    let (v1, v3) = (q1 / n - m1 * m1, q3 / n - m3 * m3);
    for (name, m, v) in [("k1", m1, v1), ("k3", m3, v3)] {
        let se = (v / n).sqrt();
        assert!((m - kl).abs() < 3.0 * se, "{name}: {m} ± {se}, KL {kl}");
    }
    assert!(v3 < v1, "var k3 {v3} ≥ var k1 {v1}");
}
