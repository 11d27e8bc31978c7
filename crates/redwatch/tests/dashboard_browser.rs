#![cfg(feature = "dashboard")]
