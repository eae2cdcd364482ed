//! `-e` arguments, one per line. `@file` arguments are left out: they read files.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<String> = text
        .split('\n')
        .filter(|a| !a.starts_with('@'))
        .map(str::to_owned)
        .collect();
    match capstan::extra_vars::parse(&args, Path::new("/nonexistent")) {
        Ok(vars) => {
            let _ = capstan::vars::to_context(&vars);
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a problem");
            let _ = problems.to_string();
        }
    }
});
