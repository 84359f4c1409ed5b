//! How a rollout shows it is moving: a bar on a terminal; elsewhere (a log file, CI) a
//! plain line every few seconds and one at the end, so that a long run is never silent
//! until its summary.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressOutput {
    /// A bar redrawn in place (standard error is a terminal).
    Bar,
    /// A line on standard error every [`LINE_EVERY`], and at the end.
    Lines,
    /// Nothing.
    Quiet,
}

/// How often a progress line is written when there is no terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// The rollout's progress.
pub struct Progress {
    output: ProgressOutput,
    bar: ProgressBar,
    total: usize,
    done: usize,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    pub fn new(output: ProgressOutput, total: usize) -> Progress {
        let bar = match output {
            ProgressOutput::Bar => {
                let bar = ProgressBar::new(total as u64);
                if let Ok(style) = ProgressStyle::with_template(
                    "{elapsed_precise} [{wide_bar}] {pos}/{len} devices rolled out ({msg}, {eta} left)",
                ) {
                    bar.set_style(style);
                }
                bar
            }
            ProgressOutput::Lines | ProgressOutput::Quiet => ProgressBar::hidden(),
        };
        let now = Instant::now();
        Progress {
            output,
            bar,
            total,
            done: 0,
            started: now,
            last_line: now,
        }
    }

    /// One more device rolled out.
    pub fn inc(&mut self) {
        self.done += 1;
        match self.output {
            ProgressOutput::Bar => {
                self.bar.set_message(self.rate());
                self.bar.inc(1);
            }
            ProgressOutput::Lines if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            ProgressOutput::Lines | ProgressOutput::Quiet => {}
        }
    }

    /// The rollout ended: the bar goes, a last line is written.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        if self.output == ProgressOutput::Lines {
            eprintln!("{}", self.line());
        }
    }

    /// Devices a second so far, as a whole number.
    fn rate(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        format!("{:.0}/s", self.done as f64 / secs)
    }

    fn line(&self) -> String {
        format!(
            "{}/{} devices rolled out in {:.0} s ({})",
            self.done,
            self.total,
            self.started.elapsed().as_secs_f64(),
            self.rate()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_a_whole_number_of_devices_a_second() {
        let mut progress = Progress::new(ProgressOutput::Quiet, 3);
        progress.inc();
        let rate = progress.rate();
        assert!(rate.ends_with("/s") && !rate.contains('.'), "{rate}");
        assert!(
            progress.line().starts_with("1/3 devices rolled out in "),
            "{}",
            progress.line()
        );
    }
}
