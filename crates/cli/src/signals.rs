//! SIGINT and SIGTERM: the first asks the work in progress to stop at its next safe point (the
//! trainer finishes its step and writes a checkpoint); a second exits at once. The atomic writes
//! keep every folder consistent either way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static STOP: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the handler (once) and returns the flag it sets.
pub fn stop_on_signal() -> &'static AtomicBool {
    INSTALL.call_once(|| {
        // ctrlc runs the handler on its own thread, not in signal context: printing is safe.
        let installed = ctrlc::set_handler(|| {
            if STOP.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond signal: exiting now");
                std::process::exit(i32::from(crate::commands::train::INTERRUPTED));
            }
            eprintln!(
                "\nstopping after this step (a checkpoint is written); signal again to quit at once"
            );
        });
        if let Err(e) = installed {
            eprintln!("warning: cannot catch Ctrl-C ({e}); an interrupted run resumes from its last checkpoint");
        }
    });
    &STOP
}
