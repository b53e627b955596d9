//! `bigfile-agent`: see the README for the commands.

fn main() -> std::process::ExitCode {
    bigfile_agent::cli::main()
}
