//! Colour for human output: whether to use it, and the few styles capstan paints with.
//!
//! The escape sequences come only from here and wrap text that has already been masked and
//! escaped (see [`super::escape`]); host output never carries a sequence of its own to the
//! terminal. The conventions are those of <https://no-color.org> (`NO_COLOR`, any non-empty
//! value, turns colour off) and <https://bixense.com/clicolors/> (`CLICOLOR_FORCE`, any
//! value but `0`, turns it on where it would be off); a `--color` flag wins over both.

use std::io::IsTerminal;

use super::event::Status;

/// What `--color` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColourChoice {
    /// Colour on a terminal, unless the environment says otherwise.
    #[default]
    Auto,
    Always,
    Never,
}

/// The environment variables the decision reads, apart so that it can be tested.
#[derive(Debug, Clone, Default)]
pub struct ColourEnv {
    pub no_color: Option<String>,
    pub clicolor_force: Option<String>,
    pub ci: bool,
    pub terminal: bool,
}

impl ColourEnv {
    /// This process's environment, and whether stdout is a terminal.
    pub fn current() -> Self {
        let text = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        Self {
            no_color: text("NO_COLOR"),
            clicolor_force: text("CLICOLOR_FORCE"),
            ci: std::env::var_os("CI").is_some(),
            terminal: std::io::stdout().is_terminal(),
        }
    }
}

/// Whether to paint: the flag first, then `NO_COLOR`, then `CLICOLOR_FORCE`, then plain in
/// CI, then colour only on a terminal.
pub fn wanted(choice: ColourChoice, env: &ColourEnv) -> bool {
    match choice {
        ColourChoice::Always => true,
        ColourChoice::Never => false,
        ColourChoice::Auto => {
            if env.no_color.as_deref().is_some_and(|v| !v.is_empty()) {
                false
            } else if env.clicolor_force.as_deref().is_some_and(|v| v != "0") {
                true
            } else {
                !env.ci && env.terminal
            }
        }
    }
}

/// A foreground colour (SGR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Green,
    Yellow,
    Red,
    Cyan,
    Bold,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Green => "32",
            Paint::Yellow => "33",
            Paint::Red => "31",
            Paint::Cyan => "36",
            Paint::Bold => "1",
        }
    }

    /// The colour of a status word.
    pub fn of(status: Status) -> Self {
        match status {
            Status::Ok => Paint::Green,
            Status::Changed => Paint::Yellow,
            Status::Failed | Status::Unreachable => Paint::Red,
            Status::Skipped | Status::Cached => Paint::Cyan,
        }
    }
}

/// Paints text that is already safe to show (masked, control characters escaped), or leaves
/// it as it is when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Painter {
    pub on: bool,
}

impl Painter {
    pub fn paint(self, paint: Paint, shown: &str) -> String {
        if self.on && !shown.is_empty() {
            format!("\x1b[{}m{shown}\x1b[0m", paint.code())
        } else {
            shown.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(no_color: Option<&str>, force: Option<&str>, ci: bool, terminal: bool) -> ColourEnv {
        ColourEnv {
            no_color: no_color.map(str::to_owned),
            clicolor_force: force.map(str::to_owned),
            ci,
            terminal,
        }
    }

    #[test]
    fn auto_follows_the_terminal_and_the_environment() {
        let auto = ColourChoice::Auto;
        assert!(wanted(auto, &env(None, None, false, true)));
        assert!(!wanted(auto, &env(None, None, false, false)));
        // NO_COLOR: any non-empty value; an empty one is as if unset.
        assert!(!wanted(auto, &env(Some("1"), None, false, true)));
        assert!(wanted(auto, &env(Some(""), None, false, true)));
        // CLICOLOR_FORCE: anything but 0, even off a terminal and in CI; NO_COLOR beats it.
        assert!(wanted(auto, &env(None, Some("1"), true, false)));
        assert!(!wanted(auto, &env(None, Some("0"), false, false)));
        assert!(!wanted(auto, &env(Some("1"), Some("1"), false, true)));
        // Plain in CI unless forced.
        assert!(!wanted(auto, &env(None, None, true, true)));
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        assert!(wanted(
            ColourChoice::Always,
            &env(Some("1"), None, true, false)
        ));
        assert!(!wanted(
            ColourChoice::Never,
            &env(None, Some("1"), false, true)
        ));
    }

    #[test]
    fn painting_is_nothing_when_off() {
        let on = Painter { on: true };
        let off = Painter { on: false };
        assert_eq!(on.paint(Paint::Green, "ok"), "\x1b[32mok\x1b[0m");
        assert_eq!(off.paint(Paint::Green, "ok"), "ok");
        assert_eq!(Paint::of(Status::Unreachable), Paint::Red);
        assert_eq!(Paint::of(Status::Cached), Paint::Cyan);
    }
}
