//! How commands show results: JSON for scripts, progress bars for people.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::BoxError;

/// Prints `value` as JSON.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), BoxError> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A bar on standard error for `total` steps of `what`; drawn only on a terminal and never
/// with `--json` (a script reads standard output; standard error stays its log).
pub(crate) fn bar(json: bool, total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target(json));
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// A spinner on standard error while `what` runs (same rules as [`bar`]).
pub(crate) fn spinner(json: bool, what: &str) -> ProgressBar {
    let spinner = ProgressBar::with_draw_target(None, target(json));
    spinner.set_message(what.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

fn target(json: bool) -> ProgressDrawTarget {
    if json {
        ProgressDrawTarget::hidden()
    } else {
        // indicatif draws nothing when standard error is not a terminal.
        ProgressDrawTarget::stderr()
    }
}
