//! The agent's random choices (blocking-query jitter, anti-entropy and check staggering, server
//! choice, DNS and prepared-query shuffles, request identities) drawn from one place, so that a
//! whole-cluster test can make them reproducible: after [`seed_thread`], every draw on that
//! thread comes from a generator seeded with it (the test's agents all run on one thread, in a
//! current-thread runtime). Without a seed, draws come from the thread's OS-seeded generator.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

// Per thread, not global: tests run in parallel on separate threads, each with its own seed, and
// must not interleave each other's draws.
thread_local! {
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Makes every later draw on this thread come from a generator seeded with `seed`.
///
/// For tests only: a seeded generator is predictable, which request client IDs, for one, must not
/// be in production.
pub fn seed_thread(seed: u64) {
    SEEDED.with(|s| *s.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Runs `f` with this thread's generator.
fn with<T>(f: impl FnOnce(&mut dyn rand::RngCore) -> T) -> T {
    SEEDED.with(|s| match s.borrow_mut().as_mut() {
        Some(rng) => f(rng),
        // The thread's OS-seeded generator: unpredictable, which production draws need.
        None => f(&mut rand::rng()),
    })
}

/// A number in `0..=max`.
pub fn up_to(max: u64) -> u64 {
    with(|r| r.random_range(0..=max))
}

/// Shuffles `items`.
pub fn shuffle<T>(items: &mut [T]) {
    with(|r| items.shuffle(r));
}

/// A random (version 4) UUID.
///
/// Through this module rather than `Uuid::new_v4`, so that seeded runs get the same IDs.
pub fn uuid() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    with(|r| r.fill_bytes(&mut bytes));
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_draws_the_same_sequence() {
        let draw = || {
            seed_thread(42);
            let mut v: Vec<u32> = (0..20).collect();
            shuffle(&mut v);
            (up_to(1000), v, uuid())
        };
        let first = std::thread::spawn(draw).join().expect("thread");
        let second = std::thread::spawn(draw).join().expect("thread");
        assert_eq!(first, second);
        // Unseeded threads still draw (and differ from each other).
        let a = std::thread::spawn(uuid).join().expect("thread");
        let b = std::thread::spawn(uuid).join().expect("thread");
        assert_ne!(a, b);
    }
}
