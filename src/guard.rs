//! Panics caught where a bug must not end the program (a statement, a kernel request, a
//! completion), their message and location kept.
//!
//! While [`catch`] runs its closure, a panic hook records the message and location instead of
//! printing them, and `catch` returns that text. Panics elsewhere reach the previous hook.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// True while this thread runs a statement under [`catch`].
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// The message of the last panic caught on this thread.
    static MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// The environment variable that forces panics, for tests of the panic path: a comma-separated
/// list of statement keywords (`info`) and kernel message types (`complete_request`).
pub const DEBUG_PANIC_VAR: &str = "MNISTLAB_DEBUG_PANIC";

fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let payload = info.payload();
                let text = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into());
                let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                MESSAGE.with(|m| *m.borrow_mut() = Some(format!("{text}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic inside it comes back as `Err` with its message and location.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    install_hook();
    let outer = CATCHING.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(outer));
    result.map_err(|_| MESSAGE.with(|m| m.borrow_mut().take()).unwrap_or_else(|| "a panic".into()))
}

/// The words of [`DEBUG_PANIC_VAR`] (none when it is unset).
pub fn debug_panic_words() -> Vec<String> {
    std::env::var(DEBUG_PANIC_VAR)
        .map(|v| v.split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty()).collect())
        .unwrap_or_default()
}

/// Panics when [`DEBUG_PANIC_VAR`] names `word` (a statement keyword): the test hook.
pub fn debug_panic(word: &str) {
    if debug_panic_words().iter().any(|w| w == word) {
        panic!("{DEBUG_PANIC_VAR}={word} asked this statement to panic");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_the_next_call_works() {
        let err = catch(|| -> u32 { panic!("boom {}", 7) }).unwrap_err();
        assert!(err.starts_with("boom 7 at "), "{err}");
        assert!(err.contains("guard.rs"), "{err}");
        assert_eq!(catch(|| 3).unwrap(), 3);
    }

    #[test]
    fn nested_catches_keep_their_own_panics() {
        let outer = catch(|| {
            let inner = catch(|| panic!("inner"));
            assert!(inner.unwrap_err().starts_with("inner"));
            panic!("outer")
        });
        assert!(outer.unwrap_err().starts_with("outer"));
    }
}
