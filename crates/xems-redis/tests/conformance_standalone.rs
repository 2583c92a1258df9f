//! The conformance suite, unchanged, against a standalone Redis server.

mod common;

xems_testkit::conformance_suite!(common::Standalone);
