//! The demo's JSON API as a client sees it, in-process on the memory store.

mod client;

mod account;
mod data;
mod input;
