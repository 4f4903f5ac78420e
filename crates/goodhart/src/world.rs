//! The built-in world (filled in by the world work).
