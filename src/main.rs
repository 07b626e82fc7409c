use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut src = String::new();
    std::io::stdin().read_to_string(&mut src).unwrap();
    match adql::check(&src) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => { println!("{e}"); ExitCode::FAILURE }
    }
}
