//! Arbitrary template text through `Templates::render` in both modes, and as a `when`
//! expression: any text renders or is refused with a `TemplateError`, never a panic.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use capstan::template::{Mode, Templates, shell_quote};
use libfuzzer_sys::fuzz_target;
use minijinja::Value;

static TEMPLATES: LazyLock<Templates> = LazyLock::new(|| Templates::new("/nonexistent"));

static CONTEXT: LazyLock<Value> = LazyLock::new(|| {
    let mut m: BTreeMap<&str, Value> = BTreeMap::new();
    m.insert("host_dir", Value::from("/tmp/capstan fuzz"));
    m.insert("inventory_hostname", Value::from("dtr-1"));
    m.insert("hostile", Value::from("it's $(x) `y` \"z\"\n*"));
    m.insert("port", Value::from(443));
    m.insert("ratio", Value::from(0.5));
    m.insert("flag", Value::from(true));
    m.insert("group_names", Value::from(vec!["dtr", "ucp"]));
    let mut result: BTreeMap<&str, Value> = BTreeMap::new();
    result.insert("rc", Value::from(0));
    result.insert("stdout", Value::from("2.7.1\n"));
    result.insert("stdout_lines", Value::from(vec!["2.7.1"]));
    m.insert("result", Value::from(result));
    Value::from(m)
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(source) = std::str::from_utf8(rest) else {
        return;
    };
    let t = &*TEMPLATES;
    let ctx = &*CONTEXT;
    match selector % 3 {
        0 => {
            if let Ok(cmd) = t.render("fuzz", source, Mode::Shell, ctx) {
                assert!(!cmd.contains('\0'), "a NUL reached a command: {cmd:?}");
            }
        }
        1 => {
            let _ = t.render("fuzz", source, Mode::Plain, ctx);
            let _ = t.variables_of(source, false);
        }
        _ => {
            let _ = t.check_expression("when", source);
            let _ = t.eval_bool("when", source, ctx);
            let _ = t.variables_of(source, true);
        }
    }
    // Quoting is either the value itself (safe characters only) or the value in single
    // quotes with each `'` closed, escaped and reopened: nothing else can reach the shell.
    if let Ok(quoted) = shell_quote(source) {
        let wrapped = format!("'{}'", source.replace('\'', "'\\''"));
        assert!(
            quoted == wrapped
                || (quoted == source && !source.contains(['\'', ' ', '$', '`', '\n'])),
            "{source:?} quoted as {quoted:?}"
        );
    }
});
