//! The ADQL parser and validator must never panic, whatever the text: every input is either a query or an error
//! with a position inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match adql::check(text) {
            Ok(_) => {}
            Err(e) => {
                let pos = e.pos().expect("syntax errors carry a position");
                let lines = text.split('\n').count() as u32;
                assert!(pos.line >= 1 && pos.line <= lines.max(1), "line {} outside the text", pos.line);
                assert!(pos.col >= 1);
            }
        }
    }
});
