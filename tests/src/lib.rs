//! Shared harness for kiln's integration tests: locating the kiln binary, temporary stores,
//! and checks for the peer tools the tests compare against.
