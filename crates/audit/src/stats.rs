//! Statistics for audits (filled in by the stats work).
