//! The allocator of Tally's local processes, the dev server and the bench: mimalloc, set to
//! hand freed memory back to the system within milliseconds. The Lambda functions do not use
//! it (each runs one request at a time, where glibc's allocator does well).
//!
//! Why mimalloc: on the local stack (the engines, the SDK clients and the handlers in one
//! process, their buffers freed on other threads than made them) glibc's allocator took a
//! sixth of a ballot's CPU; with mimalloc the same two cores take about 40 % more ballots a
//! second (README, "Performance").
//!
//! Why it is tuned, both measured on the 10,000-guest invites job, whose peak RSS the issue
//! bounds at 150 MB:
//! - **No transparent huge pages** (the `no_thp` feature in `[workspace.dependencies]`).
//!   mimalloc asks for huge pages on its arenas, and a 2 MiB page is resident as a whole once
//!   any byte of it is touched: 68 MB of the job's resident memory was in such pages, and
//!   turning them off took its peak from about 190 to about 170 MiB.
//! - **A purge delay of 10 ms** ([`tune`]), mimalloc 2's default, instead of mimalloc 3's
//!   1,000 ms. The job frees about a gigabyte of multi-megabyte buffers (segments, ZIP parts,
//!   request bodies) in a few seconds, and a second's worth of them stayed resident: with the
//!   shorter delay its peak is about 125 MiB.

use std::ffi::{c_int, c_long};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (`libmimalloc-sys` names it only for
/// mimalloc 2); the test below checks that it reads mimalloc 3's default.
const PURGE_DELAY: c_int = 15;
/// Milliseconds freed memory may stay with the process before mimalloc returns it.
const PURGE_DELAY_MS: c_long = 10;

/// Sets the purge delay, unless `MIMALLOC_PURGE_DELAY` in the environment already chose one.
/// Call it first thing in `main`; mimalloc reads the option whenever it schedules a purge, so
/// it holds from then on. Calling it is also what links this crate, and so its allocator, into
/// a binary: one that never names the crate gets the system allocator.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set(PURGE_DELAY, PURGE_DELAY_MS);
    }
}

/// The purge delay in effect, in milliseconds.
pub fn purge_delay_ms() -> c_long {
    // SAFETY: `mi_option_get` reads one entry of mimalloc's option table by its number, which
    // is in range; it has no other effect and may be called from any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_get(PURGE_DELAY)
    }
}

fn set(option: c_int, value: c_long) {
    // SAFETY: as above: `mi_option_set` stores `value` in the option table's entry for
    // `option` (in range), which mimalloc reads atomically; nothing else is touched.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(option, value)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number is mimalloc 3's purge delay: it reads that version's default (a
    /// wrong number would read another option's value), and then what `tune` sets; a delay
    /// chosen in the environment is left as it is.
    #[test]
    fn tune_sets_mimalloc_3s_purge_delay() {
        let before = purge_delay_ms();
        tune();
        match std::env::var("MIMALLOC_PURGE_DELAY") {
            Ok(chosen) => {
                assert_eq!(before.to_string(), chosen);
                assert_eq!(purge_delay_ms(), before);
            }
            Err(_) => {
                assert_eq!(before, 1000);
                assert_eq!(purge_delay_ms(), 10);
            }
        }
    }
}
