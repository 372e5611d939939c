//! Shell-word expansion (stub).
