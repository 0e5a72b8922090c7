//! End-to-end tests of Vigil (see `tests/e2e`).
