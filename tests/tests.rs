//! Integration tests: the real `stsedge` binary, real TLS over loopback, real files.
//! One test binary with modules, for build time.

mod common;
mod it;
