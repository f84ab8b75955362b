//! `uml-run SECS CMD [ARGS...]`: runs one command inside a User-Mode Linux
//! guest with real kernel ESP (`chaos_tests::uml`), in the current
//! directory, prints what it printed and exits with its status. Installs
//! `user-mode-linux` and `kmod` when absent. `scripts/demo --kernel` uses
//! it.

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(secs), Some(_)) = (
        args.first().and_then(|s| s.parse::<u64>().ok()),
        args.get(1),
    ) else {
        eprintln!("usage: uml-run SECS CMD [ARGS...]");
        std::process::exit(2);
    };
    if let Err(e) = chaos_tests::uml::ensure_installed() {
        eprintln!("uml-run: {e}");
        std::process::exit(1);
    }
    let cmd: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    match chaos_tests::uml::run(&cmd, &[], Duration::from_secs(secs)) {
        Ok(out) => {
            let text = out.output();
            // Drop the harness's ready line; the rest is the command's.
            let text = text.split_once('\n').map_or(text, |(_, rest)| rest);
            print!("{text}");
            if !out.success() {
                eprintln!("uml-run: {}", out.to_string().lines().next().unwrap_or(""));
            }
            std::process::exit(out.status.unwrap_or(1));
        }
        Err(e) => {
            eprintln!("uml-run: {e}");
            std::process::exit(1);
        }
    }
}
