//! SIGINT/SIGTERM handling as OpenTofu does it: both feed one shutdown channel; the first asks
//! the running operation to stop after the resource in progress, the second exits at once.
#![allow(unsafe_code)] // installing a signal handler needs sigaction

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNT: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_: nix::libc::c_int) {
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if n >= 2 {
        let msg = b"Two interrupts received. Exiting immediately. Note that data loss may have occurred.\n";
        // Only async-signal-safe calls here: write(2) and _exit(2).
        unsafe {
            nix::libc::write(2, msg.as_ptr().cast(), msg.len());
            nix::libc::_exit(1);
        }
    }
}

/// Installs the handler for SIGINT and SIGTERM.
pub fn install() {
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only touches an atomic and async-signal-safe libc calls.
    unsafe {
        let _ = sigaction(Signal::SIGINT, &act);
        let _ = sigaction(Signal::SIGTERM, &act);
    }
}

/// True once the first interrupt has arrived.
pub fn interrupted() -> bool {
    COUNT.load(Ordering::SeqCst) > 0
}

/// Sleeps up to `d`, waking early on an interrupt. Returns false if interrupted.
pub fn sleep(d: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end {
        if interrupted() {
            announce();
            return false;
        }
        std::thread::sleep(
            (end - std::time::Instant::now()).min(std::time::Duration::from_millis(20)),
        );
    }
    !interrupted()
}

static ANNOUNCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints OpenTofu's interrupt notice once, in the command's output format. Called by the
/// watcher thread and by any code that notices the interrupt first (before it acts on it).
pub fn announce() {
    if !interrupted() || ANNOUNCED.swap(true, Ordering::SeqCst) {
        return;
    }
    let ui = crate::ui::Ui {
        json: JSON.load(Ordering::SeqCst),
    };
    ui.log("Interrupt received.\nPlease wait for OpenTofu to exit or data loss may occur.\nGracefully shutting down...");
    ui.log("Stopping operation...");
}

/// Announces the first signal as soon as it arrives (as OpenTofu's `RunOperation` does).
pub fn notice_on_interrupt(json: bool) {
    JSON.store(json, Ordering::SeqCst);
    std::thread::spawn(move || {
        while !interrupted() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        announce();
    });
}
