//! # rewardkit-goodhart
//!
//! Measures Goodhart's law for reward models: proxy and gold reward under best-of-n pressure.

pub mod bon;
pub mod world;
