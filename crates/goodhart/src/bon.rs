//! Best-of-n estimation, KL and curve fits (filled in by the best-of-n work).
