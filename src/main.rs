//! The `ccpayout` binary: everything lives in the library; see `ccpayout::cli`.

fn main() -> std::process::ExitCode {
    ccpayout::cli::main()
}
