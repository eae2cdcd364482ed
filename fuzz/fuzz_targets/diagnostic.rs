//! `Diagnostic::at_span` and `at_line` with arbitrary text and positions, spans past the
//! end, reversed or splitting a character included, then shown.
#![no_main]

use arbitrary::Arbitrary;
use capstan::diag::{Diagnostic, Diagnostics, locate};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    source: String,
    start: usize,
    end: usize,
    small_start: u8,
    small_end: u8,
    line: usize,
    column: usize,
    message: String,
}

fuzz_target!(|input: Input| {
    let src = input.source.as_str();
    let spans = [
        input.start..input.end,
        usize::from(input.small_start)..usize::from(input.small_end),
    ];
    let mut all = Diagnostics::default();
    for span in spans {
        let d = Diagnostic::at_span("fuzz.toml", src, span.clone(), input.message.as_str());
        assert!(d.line >= 1 && d.column >= 1 && d.width >= 1, "{d:?}");
        let _ = d.to_string();
        let _ = locate(src, span.start);
        all.push(d);
    }
    let d = Diagnostic::at_line("fuzz.toml", src, input.line, input.column, "m");
    let _ = d.with_hint(input.message.as_str()).to_string();
    let _ = all.sorted().to_string();
});
