//! `nanofs`: command-line entry point. Everything happens in `cli`.

fn main() {
    std::process::exit(nanofs::cli::main());
}
