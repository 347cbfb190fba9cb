//! Opening signed client-side session cookies: raw cookie headers, and payloads sealed
//! validly under the ring so the code behind the MAC is reached.
#![no_main]

use cloakroom::sealed::CookieMode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cloakroom_fuzz::sealed_cookie(CookieMode::Signed, data));
