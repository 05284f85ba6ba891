//! Golden-vector parity harness.
