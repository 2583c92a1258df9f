//! HTTP-level tests of the layer, through `tower::ServiceExt::oneshot`, split
//! by concern.

mod common;
mod config;
mod failures;
mod link;
mod rotation;
