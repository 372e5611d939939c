//! The Dockerfile parser must never panic, whatever the bytes; expanding
//! every raw word it returns must not panic either.
#![no_main]

use kiln_dockerfile::expand::Lexer;
use kiln_dockerfile::{Command, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    match parse(&src) {
        Ok(df) => {
            let lx = Lexer::new(df.directives.escape);
            let env = |name: &str| (name.len() % 2 == 0).then(|| format!("v {name}"));
            for inst in &df.instructions {
                let _ = lx.process_words(&inst.original, &env);
                if let Command::Env(kvs) | Command::Label(kvs) = &inst.command {
                    for kv in kvs {
                        let _ = lx.process_word(&kv.value, &env);
                    }
                }
            }
            let _ = df.stages();
        }
        Err(e) => {
            let _ = e.render("Dockerfile", &src);
        }
    }
});
