//! SLSA provenance (todo)
