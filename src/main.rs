//! The `diskhist` command: parse flags, call the library, map errors to exit
//! codes (0 ok, 1 failure, 2 usage).

mod cli;

fn main() {
    std::process::exit(cli::main());
}
