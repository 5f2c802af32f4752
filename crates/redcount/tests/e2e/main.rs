//! End-to-end: real runs of `redcount run` compared word for word with the independent oracle.

#[path = "../common/mod.rs"]
mod common;
mod connecting;
mod counting;
mod lifecycle;
mod output;

use common::*;
use redcount_testkit::corpus::write_text_corpus;
