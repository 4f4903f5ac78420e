//! Response features (filled in by the features work).
