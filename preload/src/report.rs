//! The guard's printer: each distinct line once per process, to stderr (one
//! write, so lines of threads do not interleave) and to the `log` facade.

use std::sync::Mutex;

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The line a guard problem is printed as.
#[cfg(test)]
fn line(text: &str) -> String {
    format!("ibstack guard: {text}\n")
}

fn once(text: &str) -> bool {
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.iter().any(|s| s == text) {
        return false;
    }
    seen.push(text.to_string());
    true
}

fn emit(text: &str, level: log::Level) {
    emit_as(text, level, "ibstack guard: ", "ibstack::guard")
}

fn emit_as(text: &str, level: log::Level, prefix: &str, target: &str) {
    if !once(text) {
        return;
    }
    let l = format!("{prefix}{text}\n");
    // SAFETY: writes l's bytes to fd 2.
    let _ = unsafe { libc::write(2, l.as_ptr().cast(), l.len()) };
    log::log!(target: target, level, "{text}");
}

/// Transparent mode's lines (`ibstack rdma: ...`), each once.
pub fn rdma(text: &str, problem: bool) {
    let level = if problem { log::Level::Warn } else { log::Level::Info };
    emit_as(text, level, "ibstack rdma: ", "ibstack::rdma")
}

/// A problem: its cause and its fix.
pub fn problem(text: &str) {
    emit(text, log::Level::Warn);
}

/// Information that is not a problem (the mode notice).
pub fn note(text: &str) {
    emit(text, log::Level::Info);
}

pub fn errno() -> i32 {
    // SAFETY: __errno_location is the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(e: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}

/// Runs `f` with errno kept as it was: the guard's own work must not change
/// what the caller sees.
pub fn keep_errno<T>(f: impl FnOnce() -> T) -> T {
    let e = errno();
    let r = f();
    set_errno(e);
    r
}

/// Runs the guard's work `f` so that a panic in it changes nothing for the caller.
pub fn shielded(f: impl FnOnce()) {
    let _inside = crate::mode::enter();
    keep_errno(|| {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_once() {
        assert!(once("x: first"));
        assert!(!once("x: first"));
        assert!(once("x: second"));
        assert_eq!(line("a"), "ibstack guard: a\n");
    }

    #[test]
    fn errno_is_kept() {
        set_errno(libc::EINPROGRESS);
        shielded(|| set_errno(libc::ENOMEM));
        assert_eq!(errno(), libc::EINPROGRESS);
        shielded(|| panic!("inside the guard"));
        assert_eq!(errno(), libc::EINPROGRESS);
    }
}
