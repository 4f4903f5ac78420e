//! # rewardkit-audit
//!
//! Finds a reward model's exploitable flaws before a policy does. Depends only on the
//! [`rewardkit_data::Scorer`] trait, so any model (or a file of precomputed scores) can be audited.

pub mod features;
pub mod stats;
