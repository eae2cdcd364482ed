//! Playbook text, as `Playbook::load` reads it: refused with located problems, or parsed
//! into plays whose recorded field spans all locate inside the text.
#![no_main]

use std::path::Path;

use capstan::playbook::Playbook;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match Playbook::parse(Path::new("fuzz/site.toml"), source.to_owned()) {
        Ok(pb) => {
            for play in &pb.plays {
                for span in play.field_spans.values().chain(play.var_spans.values()) {
                    let _ = pb.diagnostic(span.clone(), "x").to_string();
                }
                for task in &play.tasks {
                    for field in task.field_spans.keys() {
                        let _ = task.field_location(&pb, field);
                        let _ = pb.task_diagnostic(task, field, "x").to_string();
                    }
                    let _ = pb.task_diagnostic(task, "not a field", "x").to_string();
                }
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a problem");
            let _ = problems.to_string();
        }
    }
});
