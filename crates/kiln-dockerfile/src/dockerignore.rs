//! .dockerignore matching (stub).
